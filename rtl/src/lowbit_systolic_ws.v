// lowbit_systolic_ws: an R x C weight-stationary systolic array of lowbit PEs (Verilog-2005).
//
// PE_KIND selects the PE in every slot:
//   0  lowbit_mac_pe     fixed W_BITS x A_BITS multiply per cycle (signedness by W_SIGNED / A_SIGNED);
//   1  lowbit_fusion_pe  Bit-Fusion PE: P = floor(8/a)*floor(8/w) packed products per cycle, widths and
//                        signedness chosen at run time (w_mode / a_mode: 0 = 2 bit, 1 = 4 bit, 2 = 8 bit);
//   2, 3, 4  lowbit_serial_pe  bit-serial PEs, runtime widths w_width / a_width: 2 Stripes (the streamed operand's
//                        bits, SERIAL = 0), 3 Loom (both, SERIAL = 1), 4 Stripes on the transposed GEMM of an
//                        input-stationary array (the stationary operand's bits, SERIAL = 2).
// A PE slot is W_SLOT bits of weight and A_SLOT bits of activation: W_BITS / A_BITS for PE_KIND 0, 32 / 32 for
// PE_KIND 1 (P elements packed LSB first, element j at bits [j*bits +: bits]).
//
// Dataflow, one step per rising edge with en = 1 (en = 0 freezes every register: a global stall):
//   * weights: while load_w = 1 the C slots on w_top enter row 0 and every row passes its weights to the row
//     below, so after R load steps of rows S[R-1], S[R-2], ..., S[0] (bottom row first) row r holds S[r];
//   * activations: a_left carries one activation vector (slot r of row r, unskewed). Row r sees it r steps later
//     (input skew registers: row r has r of them); in the array every PE passes its activation to the right;
//   * partial sums: row 0 starts from 0, each PE adds its product to the sum from the PE above and passes it down;
//   * results: column c's bottom PE finishes the dot product of vector m at step m + (R-1) + c. Column c is then
//     delayed by C-1-c output de-skew registers, so y_bottom carries all C results of vector m together,
//     R + C - 1 steps after the vector was on a_left (the vector on a_left at step t is row t's slot at that step).
// Weight preload (OVERLAP):
//   0  serial: the weights shift through the PEs' own registers as above; the array computes nothing useful while
//      loading (sim's weight_preload: serial);
//   1  overlapped: every PE has a shadow register and the weights travel down a separate pipeline, so the next
//      fold's tile loads while the current fold streams (sim's weight_preload: overlapped). Column c's slot on
//      w_top passes c skew registers, then moves down one row per step (load_w is unused). w_cap, given with the
//      tile's last beat (the R beats enter on consecutive steps, row R-1 first), travels right one column per step;
//      when it reaches column c every PE(r, c) copies the weight passing row r into its shadow. w_swap, given one
//      step before a fold's first vector is on a_left, travels with the activations (row skew, then right); when
//      it reaches PE(r, c) the PE takes its shadow (or, on the same step, the weight being captured) into its
//      working register, so the fold's first vector meets the new weight. A fold's tile may therefore start
//      loading when the previous fold starts streaming, and a fold may start R steps after the previous one.
// Partial products that are not on a vector's wavefront (e.g. during weight loading) never reach a result: the
// sum that reaches column c's bottom for vector m only passed PEs while they held vector m.
//
// All sums wrap modulo 2^ACC_BITS (two's complement). rst_n is a synchronous active-low reset.
`default_nettype none
module lowbit_systolic_ws #(
    parameter PE_KIND  = 0,   // 0 fixed, 1 Bit-Fusion, 2 Stripes, 3 Loom, 4 Stripes serializing the stationary operand
    parameter ROWS     = 4,   // R: rows hold the reduction (K slots)
    parameter COLS     = 4,   // C: columns hold the outputs (N)
    parameter W_BITS   = 8,   // PE_KIND 0: weight bits; 2, 3: the widest runtime width is max(W_BITS, A_BITS)
    parameter A_BITS   = 8,   // PE_KIND 0: activation bits
    /* verilator lint_off UNUSEDPARAM */  // unused by the Bit-Fusion and bit-serial PEs (run-time signedness)
    parameter W_SIGNED = 1,   // PE_KIND 0 only: weights are two's complement (else unsigned)
    parameter A_SIGNED = 1,   // PE_KIND 0 only: activations are two's complement (else unsigned)
    /* verilator lint_on UNUSEDPARAM */
    parameter ACC_BITS = 32,  // accumulator / partial-sum bits
    parameter OVERLAP  = 0    // weight preload: 0 serial (shift through the PEs), 1 overlapped (shadow registers)
) (
    clk, rst_n, en, load_w, w_cap, w_swap, w_mode, a_mode, w_signed, a_signed, w_width, a_width, w_top, a_left, y_bottom
);
    // Derived from the parameters above (localparams: they cannot be overridden).
    localparam SERIAL = (PE_KIND >= 2);                               // a lowbit_serial_pe array
    /* verilator lint_off UNUSEDPARAM */  // read by the bit-serial PEs only
    localparam S_CODE = (PE_KIND == 3) ? 1 : (PE_KIND == 4) ? 2 : 0;  // its SERIAL parameter
    /* verilator lint_on UNUSEDPARAM */
    localparam SB     = (W_BITS > A_BITS) ? W_BITS : A_BITS;          // bit-serial: the widest runtime width
    localparam NB     = $clog2(SB + 1);                               // bit-serial: a runtime width, 1..SB
    localparam IB     = (SB > 1) ? $clog2(SB) : 1;                    // bit-serial: a bit index, 0..SB-1
    // A bit-serial activation slot carries its beat with it: {jw, ja, valid, value} (see lowbit_serial_pe).
    localparam W_SLOT = (PE_KIND == 1) ? 32 : SERIAL ? SB : W_BITS;
    localparam A_SLOT = (PE_KIND == 1) ? 32 : SERIAL ? SB + 1 + 2 * IB : A_BITS;

    input  wire                     clk;
    input  wire                     rst_n;
    input  wire                     en;         // advance the whole array by one step
    /* verilator lint_off UNUSEDSIGNAL */       // load_w serves OVERLAP = 0, w_cap / w_swap OVERLAP = 1
    input  wire                     load_w;     // OVERLAP 0: this step shifts weights down (w_top enters row 0)
    input  wire                     w_cap;      // OVERLAP 1: w_top carries the tile's last beat (row 0's weights)
    input  wire                     w_swap;     // OVERLAP 1: the next step's a_left vector is a fold's first
    /* verilator lint_on UNUSEDSIGNAL */
    /* verilator lint_off UNUSEDSIGNAL */       // run-time configuration: each input serves some PE kinds only
    input  wire [1:0]               w_mode;     // PE_KIND 1: weight width 0/1/2 = 2/4/8 bits
    input  wire [1:0]               a_mode;     // PE_KIND 1: activation width 0/1/2 = 2/4/8 bits
    input  wire                     w_signed;   // PE_KIND 1-4: weights are two's complement
    input  wire                     a_signed;   // PE_KIND 1-4: activations are two's complement
    input  wire [NB-1:0]            w_width;    // PE_KIND 2-4: weight width, 1..SB
    input  wire [NB-1:0]            a_width;    // PE_KIND 2-4: activation width, 1..SB
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire [COLS*W_SLOT-1:0]   w_top;      // column c's weight slot at [c*W_SLOT +: W_SLOT]
    input  wire [ROWS*A_SLOT-1:0]   a_left;     // row r's activation slot at [r*A_SLOT +: A_SLOT], unskewed
    output wire [COLS*ACC_BITS-1:0] y_bottom;   // column c's result at [c*ACC_BITS +: ACC_BITS], de-skewed

    // Flattened nets between PEs.
    //   w_net: (ROWS+1) x COLS weight slots, w_net[r][c] enters PE(r, c) from above (row ROWS is the unused
    //          output of the bottom row);
    //   a_net: ROWS x (COLS+1) activation slots, a_net[r][c] enters PE(r, c) from the left (column COLS is the
    //          unused output of the right column);
    //   p_net: (ROWS+1) x COLS partial sums, p_net[r][c] enters PE(r, c) from above (row 0 is zero, row ROWS
    //          leaves the bottom).
    /* verilator lint_off UNUSEDSIGNAL */
    wire [(ROWS+1)*COLS*W_SLOT-1:0]   w_net;
    wire [ROWS*(COLS+1)*A_SLOT-1:0]   a_net;
    /* verilator lint_on UNUSEDSIGNAL */
    wire [(ROWS+1)*COLS*ACC_BITS-1:0] p_net;

    assign w_net[COLS*W_SLOT-1:0]   = w_top;
    assign p_net[COLS*ACC_BITS-1:0] = {COLS*ACC_BITS{1'b0}};

    // What each PE(r, c) loads into its working weight register, and when: pe_load[r*COLS+c], pe_w[(r*COLS+c)*W_SLOT].
    wire [ROWS*COLS-1:0]        pe_load;
    wire [ROWS*COLS*W_SLOT-1:0] pe_w;

    genvar r, c;
    generate
        if (OVERLAP == 0) begin : g_shift_preload
            // the PEs' registers form the shift chain: PE(r, c) loads from the PE above on every load step
            assign pe_load = {(ROWS*COLS){load_w}};
            assign pe_w    = w_net[ROWS*COLS*W_SLOT-1:0];
        end else begin : g_overlap_preload
            // ---- weight pipeline: column c's slot passes c skew registers, then one register per row ---------------
            wire [COLS*W_SLOT-1:0]        w_skewed;  // column c's slot, c steps late
            wire [ROWS*COLS*W_SLOT-1:0]   w_pass;    // the weight passing row r of column c this step
            wire [COLS-1:0]               cap;       // w_cap, c steps late: column c captures this step
            wire [ROWS*(COLS+1)-1:0]      sw;        // the swap marker entering PE(r, c) from the left
            for (c = 0; c < COLS; c = c + 1) begin : g_wcol
                if (c == 0) begin : g_direct
                    assign w_skewed[0 +: W_SLOT] = w_top[0 +: W_SLOT];
                    assign cap[0] = w_cap;
                end else begin : g_delay
                    reg [W_SLOT-1:0] stage [0:c-1];  // stage[0] is the newest
                    reg [c-1:0]      cap_q;          // cap_q[0] is the newest
                    integer i;
                    always @(posedge clk) begin
                        if (!rst_n) begin
                            for (i = 0; i < c; i = i + 1) stage[i] <= {W_SLOT{1'b0}};
                            cap_q <= {c{1'b0}};
                        end else if (en) begin
                            stage[0] <= w_top[c*W_SLOT +: W_SLOT];
                            for (i = 1; i < c; i = i + 1) stage[i] <= stage[i-1];
                            cap_q[0] <= w_cap;
                            for (i = 1; i < c; i = i + 1) cap_q[i] <= cap_q[i-1];
                        end
                    end
                    assign w_skewed[c*W_SLOT +: W_SLOT] = stage[c-1];
                    assign cap[c] = cap_q[c-1];
                end
                for (r = 0; r < ROWS; r = r + 1) begin : g_wrow
                    localparam P = (r*COLS+c)*W_SLOT;
                    if (r == 0) begin : g_top
                        assign w_pass[P +: W_SLOT] = w_skewed[c*W_SLOT +: W_SLOT];
                    end else begin : g_pipe
                        reg [W_SLOT-1:0] pipe;  // the weight that passed row r-1 last step
                        always @(posedge clk) begin
                            if (!rst_n)  pipe <= {W_SLOT{1'b0}};
                            else if (en) pipe <= w_pass[((r-1)*COLS+c)*W_SLOT +: W_SLOT];
                        end
                        assign w_pass[P +: W_SLOT] = pipe;
                    end
                    // shadow register; on the step the PE swaps it also captures, the PE takes the new weight directly
                    reg [W_SLOT-1:0] shadow;
                    always @(posedge clk) begin
                        if (!rst_n)              shadow <= {W_SLOT{1'b0}};
                        else if (en && cap[c])   shadow <= w_pass[P +: W_SLOT];
                    end
                    assign pe_load[r*COLS+c]  = sw[r*(COLS+1)+c];
                    assign pe_w[P +: W_SLOT] = cap[c] ? w_pass[P +: W_SLOT] : shadow;
                end
            end
            // ---- swap marker: row r's copy passes r skew registers, then one register per column ----------------
            for (r = 0; r < ROWS; r = r + 1) begin : g_swrow
                if (r == 0) begin : g_direct
                    assign sw[0] = w_swap;
                end else begin : g_delay
                    reg [r-1:0] sk;  // sk[0] is the newest
                    integer i;
                    always @(posedge clk) begin
                        if (!rst_n) begin
                            sk <= {r{1'b0}};
                        end else if (en) begin
                            sk[0] <= w_swap;
                            for (i = 1; i < r; i = i + 1) sk[i] <= sk[i-1];
                        end
                    end
                    assign sw[r*(COLS+1)] = sk[r-1];
                end
                for (c = 0; c < COLS; c = c + 1) begin : g_swcol
                    reg q;
                    always @(posedge clk) begin
                        if (!rst_n)  q <= 1'b0;
                        else if (en) q <= sw[r*(COLS+1)+c];
                    end
                    assign sw[r*(COLS+1)+c+1] = q;
                end
            end
        end
        // ---- input skew: row r's slot passes r registers before entering PE(r, 0) ----------------------------
        for (r = 0; r < ROWS; r = r + 1) begin : g_skew
            if (r == 0) begin : g_direct
                assign a_net[0 +: A_SLOT] = a_left[0 +: A_SLOT];
            end else begin : g_delay
                reg [A_SLOT-1:0] stage [0:r-1];  // stage[0] is the newest
                integer i;
                always @(posedge clk) begin
                    if (!rst_n) begin
                        for (i = 0; i < r; i = i + 1) stage[i] <= {A_SLOT{1'b0}};
                    end else if (en) begin
                        stage[0] <= a_left[r*A_SLOT +: A_SLOT];
                        for (i = 1; i < r; i = i + 1) stage[i] <= stage[i-1];
                    end
                end
                assign a_net[(r*(COLS+1))*A_SLOT +: A_SLOT] = stage[r-1];
            end
        end

        // ---- the PE grid -----------------------------------------------------------------------------------
        for (r = 0; r < ROWS; r = r + 1) begin : g_row
            for (c = 0; c < COLS; c = c + 1) begin : g_col
                if (PE_KIND == 1) begin : g_fusion
                    lowbit_fusion_pe #(.ACC_BITS(ACC_BITS)) pe (
                        .clk(clk), .rst_n(rst_n), .en(en), .load_w(pe_load[r*COLS+c]),
                        .w_mode(w_mode), .a_mode(a_mode), .w_signed(w_signed), .a_signed(a_signed),
                        .w_in    (pe_w[(r*COLS+c)*W_SLOT +: W_SLOT]),
                        .w_out   (w_net[((r+1)*COLS+c)*W_SLOT +: W_SLOT]),
                        .a_in    (a_net[(r*(COLS+1)+c)*A_SLOT +: A_SLOT]),
                        .a_out   (a_net[(r*(COLS+1)+c+1)*A_SLOT +: A_SLOT]),
                        .psum_in (p_net[(r*COLS+c)*ACC_BITS +: ACC_BITS]),
                        .psum_out(p_net[((r+1)*COLS+c)*ACC_BITS +: ACC_BITS]));
                end else if (SERIAL) begin : g_serial
                    localparam AI = (r*(COLS+1)+c)*A_SLOT;     // this PE's activation slot
                    localparam AO = (r*(COLS+1)+c+1)*A_SLOT;   // the slot it passes right
                    lowbit_serial_pe #(.MAX_BITS(SB), .SERIAL(S_CODE), .ACC_BITS(ACC_BITS)) pe (
                        .clk(clk), .rst_n(rst_n), .en(en), .load_w(pe_load[r*COLS+c]),
                        .w_bits(w_width), .a_bits(a_width), .w_signed(w_signed), .a_signed(a_signed),
                        .w_in    (pe_w[(r*COLS+c)*W_SLOT +: W_SLOT]),
                        .w_out   (w_net[((r+1)*COLS+c)*W_SLOT +: W_SLOT]),
                        .a_in          (a_net[AI +: SB]),         .a_out         (a_net[AO +: SB]),
                        .beat_valid_in (a_net[AI + SB]),          .beat_valid_out(a_net[AO + SB]),
                        .beat_ja_in    (a_net[AI + SB + 1 +: IB]), .beat_ja_out   (a_net[AO + SB + 1 +: IB]),
                        .beat_jw_in    (a_net[AI + SB + 1 + IB +: IB]),
                        .beat_jw_out   (a_net[AO + SB + 1 + IB +: IB]),
                        .psum_in (p_net[(r*COLS+c)*ACC_BITS +: ACC_BITS]),
                        .psum_out(p_net[((r+1)*COLS+c)*ACC_BITS +: ACC_BITS]));
                end else begin : g_fixed
                    lowbit_mac_pe #(.W_BITS(W_BITS), .A_BITS(A_BITS), .ACC_BITS(ACC_BITS),
                                    .W_SIGNED(W_SIGNED), .A_SIGNED(A_SIGNED)) pe (
                        .clk(clk), .rst_n(rst_n), .en(en), .load_w(pe_load[r*COLS+c]),
                        .w_in    (pe_w[(r*COLS+c)*W_SLOT +: W_SLOT]),
                        .w_out   (w_net[((r+1)*COLS+c)*W_SLOT +: W_SLOT]),
                        .a_in    (a_net[(r*(COLS+1)+c)*A_SLOT +: A_SLOT]),
                        .a_out   (a_net[(r*(COLS+1)+c+1)*A_SLOT +: A_SLOT]),
                        .psum_in (p_net[(r*COLS+c)*ACC_BITS +: ACC_BITS]),
                        .psum_out(p_net[((r+1)*COLS+c)*ACC_BITS +: ACC_BITS]));
                end
            end
        end

        // ---- output de-skew: column c's bottom sum passes C-1-c registers ---------------------------------
        for (c = 0; c < COLS; c = c + 1) begin : g_deskew
            if (c == COLS - 1) begin : g_direct
                assign y_bottom[c*ACC_BITS +: ACC_BITS] = p_net[(ROWS*COLS+c)*ACC_BITS +: ACC_BITS];
            end else begin : g_delay
                reg [ACC_BITS-1:0] stage [0:COLS-2-c];  // stage[0] is the newest
                integer i;
                always @(posedge clk) begin
                    if (!rst_n) begin
                        for (i = 0; i < COLS - 1 - c; i = i + 1) stage[i] <= {ACC_BITS{1'b0}};
                    end else if (en) begin
                        stage[0] <= p_net[(ROWS*COLS+c)*ACC_BITS +: ACC_BITS];
                        for (i = 1; i < COLS - 1 - c; i = i + 1) stage[i] <= stage[i-1];
                    end
                end
                assign y_bottom[c*ACC_BITS +: ACC_BITS] = stage[COLS-2-c];
            end
        end
    endgenerate

    // ---- parameter checks, at elaboration: Verilator reports the message ($error in a generate block); other tools
    // stop on the missing module whose name states the rule (tests/rtl/test_params.py drives every check) --------
    generate
        if (PE_KIND < 0 || PE_KIND > 4) begin : g_param_error_0
`ifdef VERILATOR
            $error("lowbit_systolic_ws: parameter PE_KIND = %0d must be 0 (fixed), 1 (Bit Fusion), 2 (Stripes), 3 (Loom) or 4 (Stripes, stationary bits)",
                   PE_KIND);
`else
            lowbit_param_error__PE_KIND_must_be_0_to_4 stop ();
`endif
        end
        if (ROWS < 1) begin : g_param_error_1
`ifdef VERILATOR
            $error("lowbit_systolic_ws: parameter ROWS = %0d must be >= 1", ROWS);
`else
            lowbit_param_error__ROWS_must_be_at_least_1 stop ();
`endif
        end
        if (COLS < 1) begin : g_param_error_2
`ifdef VERILATOR
            $error("lowbit_systolic_ws: parameter COLS = %0d must be >= 1", COLS);
`else
            lowbit_param_error__COLS_must_be_at_least_1 stop ();
`endif
        end
        if (OVERLAP != 0 && OVERLAP != 1) begin : g_param_error_3
`ifdef VERILATOR
            $error("lowbit_systolic_ws: parameter OVERLAP = %0d must be 0 (serial preload) or 1 (overlapped)", OVERLAP);
`else
            lowbit_param_error__OVERLAP_must_be_0_or_1 stop ();
`endif
        end
    endgenerate
endmodule
`default_nettype wire
