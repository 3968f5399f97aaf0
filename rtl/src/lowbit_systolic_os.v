// lowbit_systolic_os: an R x C output-stationary systolic array of lowbit PEs (Verilog-2005).
//
// Each PE(r, c) keeps one output, Y[m_r, n_c], in its accumulator while the reduction streams through:
//   * activations: a_left carries one vector per step, row r's slot {last, first, value}: the activation of row r's
//     output m_r at reduction slot k, with flags marking the fold's first and last slot. Row r's slot passes r + 1
//     skew registers, then moves right one PE per step;
//   * weights: w_top carries one weight slot per column per step, column c's at reduction slot k (the same k as the
//     activations of that step). Column c's slot passes c skew registers, then moves down one PE per step through
//     the PEs' own weight registers (load_w = 1 on every step), so it meets its activation in every PE of the
//     column: the PE multiplies the weight it registered on the previous step by the activation arriving now;
//   * accumulation: each PE adds its product to its own partial sum (psum_in = psum_out), or starts from 0 on a
//     slot flagged first. The PEs are lowbit_mac_pe (PE_KIND 0), lowbit_fusion_pe (1) and lowbit_serial_pe (2
//     Stripes, 3 Loom), unchanged;
//   * bit-serial PEs: an element takes S beats; each row's slot also carries the beat {jw, ja, valid} (as in
//     lowbit_systolic_ws) and the top holds an element's weights on w_top over its beats. A serial PE keeps its
//     weight for all of an element's beats, so it loads its weight register only on the step before the element's
//     first beat reaches it (the other PEs load on every step); first flags every beat of the fold's first
//     element, last only the final beat of its last;
//   * results: on the step after a slot flagged last has passed PE(r, c), its accumulator holds the finished output.
//     One PE per column finishes per step (row r at step T + r + c of a fold whose last slot entered at T - 1), so
//     the PE drives its column's result bus on that step; the bus is registered and column c is delayed by C-1-c
//     de-skew registers, so y_bottom carries the C outputs of one row m_r together, with y_valid.
// Folds may follow each other as soon as every column's bus is free: R steps after the previous fold's first
// result (sim's os double-buffering: "a fold's sums drain (R cycles) while the next fold accumulates"); the PE's
// accumulator is free on the step it drives the bus, so the next fold may start accumulating on that same step.
// Rows without flags (past the end of M) never drive a bus.
//
// en = 0 freezes every register (global stall). All sums wrap modulo 2^ACC_BITS. rst_n is synchronous, active low.
`default_nettype none
module lowbit_systolic_os #(
    parameter PE_KIND  = 0,   // 0 fixed (lowbit_mac_pe), 1 Bit-Fusion (lowbit_fusion_pe), 2 Stripes, 3 Loom
    parameter ROWS     = 4,   // R: rows hold outputs m (R rows of M per fold)
    parameter COLS     = 4,   // C: columns hold outputs n
    parameter W_BITS   = 8,   // PE_KIND 0: weight bits; 2, 3: the widest runtime width is max(W_BITS, A_BITS)
    parameter A_BITS   = 8,   // PE_KIND 0: activation bits
    /* verilator lint_off UNUSEDPARAM */  // unused by the Bit-Fusion PE (run-time signedness)
    parameter W_SIGNED = 1,   // PE_KIND 0 only
    parameter A_SIGNED = 1,   // PE_KIND 0 only
    /* verilator lint_on UNUSEDPARAM */
    parameter ACC_BITS = 32
) (
    clk, rst_n, en, w_mode, a_mode, w_signed, a_signed, w_width, a_width, w_top, a_left, y_bottom, y_valid
);
    localparam SERIAL = (PE_KIND == 2) || (PE_KIND == 3);
    localparam SB     = (W_BITS > A_BITS) ? W_BITS : A_BITS;   // bit-serial: the widest runtime width
    localparam NB     = $clog2(SB + 1);
    localparam IB     = (SB > 1) ? $clog2(SB) : 1;
    localparam W_SLOT = (PE_KIND == 1) ? 32 : SERIAL ? SB : W_BITS;
    // the activation value and, for bit-serial PEs, its beat: {jw, ja, valid, value}
    localparam V_SLOT = (PE_KIND == 1) ? 32 : SERIAL ? SB + 1 + 2 * IB : A_BITS;
    localparam A_SLOT = V_SLOT + 2;                     // {last, first, value}

    input  wire                     clk;
    input  wire                     rst_n;
    input  wire                     en;
    /* verilator lint_off UNUSEDSIGNAL */       // run-time configuration: each input serves some PE kinds only
    input  wire [1:0]               w_mode;     // PE_KIND 1
    input  wire [1:0]               a_mode;
    input  wire                     w_signed;   // PE_KIND 1-3
    input  wire                     a_signed;
    input  wire [NB-1:0]            w_width;    // PE_KIND 2, 3
    input  wire [NB-1:0]            a_width;
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire [COLS*W_SLOT-1:0]   w_top;      // column c's weight slot at [c*W_SLOT +: W_SLOT]
    input  wire [ROWS*A_SLOT-1:0]   a_left;     // row r's {last, first, value} at [r*A_SLOT +: A_SLOT], unskewed
    output wire [COLS*ACC_BITS-1:0] y_bottom;   // one finished output row, column c at [c*ACC_BITS +: ACC_BITS]
    output wire                     y_valid;

    /* verilator lint_off UNUSEDSIGNAL */       // the bottom row's weights and the right column's flags leave the grid
    wire [(ROWS+1)*COLS*W_SLOT-1:0] w_net;      // w_net[r][c] enters PE(r, c) from above
    wire [ROWS*(COLS+1)*V_SLOT-1:0] a_net;      // a_net[r][c] enters PE(r, c) from the left
    wire [ROWS*(COLS+1)*2-1:0]      f_net;      // the flags {last, first} travelling with a_net
    /* verilator lint_on UNUSEDSIGNAL */
    wire [ROWS*COLS*ACC_BITS-1:0]   acc;        // PE(r, c)'s accumulator
    wire [ROWS*COLS-1:0]            done;       // PE(r, c)'s accumulator holds a finished output this step
    wire [ROWS*COLS-1:0]            load;       // PE(r, c) loads its weight register this step
    // the slot entering PE(r, 0) on the next step (the last-but-one skew stage), for the serial PEs' weight loads
    /* verilator lint_off UNUSEDSIGNAL */
    wire [ROWS*V_SLOT-1:0]          a_next0;
    /* verilator lint_on UNUSEDSIGNAL */

    genvar r, c;
    generate
        // ---- input skew: row r's slot passes r + 1 registers; column c's weight slot passes c -----------------
        for (r = 0; r < ROWS; r = r + 1) begin : g_askew
            reg [A_SLOT-1:0] stage [0:r];  // stage[0] is the newest
            integer i;
            always @(posedge clk) begin
                if (!rst_n) begin
                    for (i = 0; i <= r; i = i + 1) stage[i] <= {A_SLOT{1'b0}};
                end else if (en) begin
                    stage[0] <= a_left[r*A_SLOT +: A_SLOT];
                    for (i = 1; i <= r; i = i + 1) stage[i] <= stage[i-1];
                end
            end
            assign a_net[(r*(COLS+1))*V_SLOT +: V_SLOT] = stage[r][V_SLOT-1:0];
            assign f_net[(r*(COLS+1))*2 +: 2]           = stage[r][V_SLOT +: 2];
            if (r == 0) begin : g_next_in
                assign a_next0[0 +: V_SLOT] = a_left[0 +: V_SLOT];
            end else begin : g_next_stage
                assign a_next0[r*V_SLOT +: V_SLOT] = stage[r-1][V_SLOT-1:0];
            end
        end
        for (c = 0; c < COLS; c = c + 1) begin : g_wskew
            if (c == 0) begin : g_direct
                assign w_net[0 +: W_SLOT] = w_top[0 +: W_SLOT];
            end else begin : g_delay
                reg [W_SLOT-1:0] stage [0:c-1];
                integer i;
                always @(posedge clk) begin
                    if (!rst_n) begin
                        for (i = 0; i < c; i = i + 1) stage[i] <= {W_SLOT{1'b0}};
                    end else if (en) begin
                        stage[0] <= w_top[c*W_SLOT +: W_SLOT];
                        for (i = 1; i < c; i = i + 1) stage[i] <= stage[i-1];
                    end
                end
                assign w_net[c*W_SLOT +: W_SLOT] = stage[c-1];
            end
        end

        // ---- the PE grid -----------------------------------------------------------------------------------
        for (r = 0; r < ROWS; r = r + 1) begin : g_row
            for (c = 0; c < COLS; c = c + 1) begin : g_col
                localparam P = r*COLS + c;
                wire [1:0] flags = f_net[(r*(COLS+1)+c)*2 +: 2];
                wire [ACC_BITS-1:0] psum_in = flags[0] ? {ACC_BITS{1'b0}} : acc[P*ACC_BITS +: ACC_BITS];
                reg  [1:0] flags_q;  // the flags passed right (the PE registers its activation the same way)
                reg        done_q;
                always @(posedge clk) begin
                    if (!rst_n) begin
                        flags_q <= 2'b00;
                        done_q  <= 1'b0;
                    end else if (en) begin
                        flags_q <= flags;
                        done_q  <= flags[1];
                    end
                end
                assign f_net[(r*(COLS+1)+c+1)*2 +: 2] = flags_q;
                assign done[P] = done_q;
                if (SERIAL) begin : g_serial_load
                    // the beat reaching this PE next step: from the left neighbour's input, or the skew stage
                    wire [V_SLOT-1:0] nxt = (c == 0) ? a_next0[r*V_SLOT +: V_SLOT]
                                                     : a_net[(r*(COLS+1)+c-1)*V_SLOT +: V_SLOT];
                    assign load[P] = nxt[SB] && (nxt[SB+1 +: 2*IB] == {(2*IB){1'b0}});  // valid, ja = jw = 0
                end else begin : g_every_step
                    assign load[P] = 1'b1;
                end
                if (PE_KIND == 1) begin : g_fusion
                    lowbit_fusion_pe #(.ACC_BITS(ACC_BITS)) pe (
                        .clk(clk), .rst_n(rst_n), .en(en), .load_w(load[P]),
                        .w_mode(w_mode), .a_mode(a_mode), .w_signed(w_signed), .a_signed(a_signed),
                        .w_in    (w_net[(r*COLS+c)*W_SLOT +: W_SLOT]),
                        .w_out   (w_net[((r+1)*COLS+c)*W_SLOT +: W_SLOT]),
                        .a_in    (a_net[(r*(COLS+1)+c)*V_SLOT +: V_SLOT]),
                        .a_out   (a_net[(r*(COLS+1)+c+1)*V_SLOT +: V_SLOT]),
                        .psum_in (psum_in),
                        .psum_out(acc[P*ACC_BITS +: ACC_BITS]));
                end else if (SERIAL) begin : g_serial
                    localparam AI = (r*(COLS+1)+c)*V_SLOT;
                    localparam AO = (r*(COLS+1)+c+1)*V_SLOT;
                    lowbit_serial_pe #(.MAX_BITS(SB), .SERIAL(PE_KIND == 3 ? 1 : 0), .ACC_BITS(ACC_BITS)) pe (
                        .clk(clk), .rst_n(rst_n), .en(en), .load_w(load[P]),
                        .w_bits(w_width), .a_bits(a_width), .w_signed(w_signed), .a_signed(a_signed),
                        .w_in    (w_net[(r*COLS+c)*W_SLOT +: W_SLOT]),
                        .w_out   (w_net[((r+1)*COLS+c)*W_SLOT +: W_SLOT]),
                        .a_in          (a_net[AI +: SB]),          .a_out         (a_net[AO +: SB]),
                        .beat_valid_in (a_net[AI + SB]),           .beat_valid_out(a_net[AO + SB]),
                        .beat_ja_in    (a_net[AI + SB + 1 +: IB]),  .beat_ja_out   (a_net[AO + SB + 1 +: IB]),
                        .beat_jw_in    (a_net[AI + SB + 1 + IB +: IB]),
                        .beat_jw_out   (a_net[AO + SB + 1 + IB +: IB]),
                        .psum_in (psum_in),
                        .psum_out(acc[P*ACC_BITS +: ACC_BITS]));
                end else begin : g_fixed
                    lowbit_mac_pe #(.W_BITS(W_BITS), .A_BITS(A_BITS), .ACC_BITS(ACC_BITS),
                                    .W_SIGNED(W_SIGNED), .A_SIGNED(A_SIGNED)) pe (
                        .clk(clk), .rst_n(rst_n), .en(en), .load_w(load[P]),
                        .w_in    (w_net[(r*COLS+c)*W_SLOT +: W_SLOT]),
                        .w_out   (w_net[((r+1)*COLS+c)*W_SLOT +: W_SLOT]),
                        .a_in    (a_net[(r*(COLS+1)+c)*V_SLOT +: V_SLOT]),
                        .a_out   (a_net[(r*(COLS+1)+c+1)*V_SLOT +: V_SLOT]),
                        .psum_in (psum_in),
                        .psum_out(acc[P*ACC_BITS +: ACC_BITS]));
                end
            end
        end

        // ---- result buses: per column, the finished PE's accumulator, registered, then de-skewed --------------
        for (c = 0; c < COLS; c = c + 1) begin : g_bus
            reg [ACC_BITS-1:0] bus;
            reg                any;
            integer i;
            always @(*) begin
                bus = {ACC_BITS{1'b0}};
                any = 1'b0;
                for (i = 0; i < ROWS; i = i + 1) begin
                    if (done[i*COLS+c]) begin
                        bus = bus | acc[(i*COLS+c)*ACC_BITS +: ACC_BITS];
                        any = 1'b1;
                    end
                end
            end
            // the bus register, then C-1-c de-skew registers: stage[0] is the bus register
            reg [ACC_BITS:0] stage [0:COLS-1-c];
            integer j;
            always @(posedge clk) begin
                if (!rst_n) begin
                    for (j = 0; j <= COLS - 1 - c; j = j + 1) stage[j] <= {(ACC_BITS+1){1'b0}};
                end else if (en) begin
                    stage[0] <= {any, bus};
                    for (j = 1; j <= COLS - 1 - c; j = j + 1) stage[j] <= stage[j-1];
                end
            end
            assign y_bottom[c*ACC_BITS +: ACC_BITS] = stage[COLS-1-c][ACC_BITS-1:0];
            if (c == 0) begin : g_valid
                assign y_valid = stage[COLS-1][ACC_BITS];
            end else begin : g_unused
                wire unused_valid = stage[COLS-1-c][ACC_BITS];
            end
        end
    endgenerate

    // ---- parameter checks, at elaboration: Verilator reports the message ($error in a generate block); other tools
    // stop on the missing module whose name states the rule (tests/rtl/test_params.py drives every check) --------
    generate
        if (PE_KIND < 0 || PE_KIND > 3) begin : g_param_error_0
`ifdef VERILATOR
            $error("lowbit_systolic_os: parameter PE_KIND = %0d must be 0 (fixed), 1 (Bit Fusion), 2 (Stripes) or 3 (Loom)",
                   PE_KIND);
`else
            lowbit_param_error__PE_KIND_must_be_0_to_3 stop ();
`endif
        end
        if (ROWS < 1) begin : g_param_error_1
`ifdef VERILATOR
            $error("lowbit_systolic_os: parameter ROWS = %0d must be >= 1", ROWS);
`else
            lowbit_param_error__ROWS_must_be_at_least_1 stop ();
`endif
        end
        if (COLS < 1) begin : g_param_error_2
`ifdef VERILATOR
            $error("lowbit_systolic_os: parameter COLS = %0d must be >= 1", COLS);
`else
            lowbit_param_error__COLS_must_be_at_least_1 stop ();
`endif
        end
    endgenerate
endmodule
`default_nettype wire
