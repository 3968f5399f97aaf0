// lowbit_gemm_top: tiled GEMM Y[M,N] = A[M,K] x B[K,N] on a weight-stationary lowbit_systolic_ws array
// (Verilog-2005). docs/rtl.md, section "Array and top level", is the full specification; in short:
//
// Fold order (as sim's ws model and SCALE-Sim): the array's rows hold Kp = ceil(K/pack) reduction slots, its
// columns hold N; column fold cf = 0..NF-1 outer, row fold rf = 0..KF-1 inner, KF = ceil(Kp/R), NF = ceil(N/C).
//
// Input stream (in_valid / in_ready / in_data), per fold in that order:
//   R weight beats: the fold's weight tile, row R-1 first (bits [c*W_SLOT +: W_SLOT] = PE(r, c)'s slot);
//   M activation beats: vector m = 0..M-1 (bits [r*A_SLOT +: A_SLOT] = row r's slot).
// Output stream (out_valid / out_ready / out_data / out_last): after the last row fold of each column fold,
//   M beats, m = 0..M-1, each one row of C raw accumulators (bits [c*ACC_BITS +: ACC_BITS] = Y[m, cf*C + c];
//   columns past N carry the zero-padded columns); out_last marks the GEMM's final beat.
//
// Per fold the array is busy for R load steps plus M + R + C - 2 streaming steps (vectors enter for M steps,
// then zeros until the last product leaves PE(R-1, C-1)): 2R + C + M - 2 steps, SCALE-Sim's ws cycles per fold.
// Folds follow back to back: the de-skewed result row of the fold's last vector is consumed during the next
// fold's first load step (or one extra, uncounted drain step after the last fold).
//
// Stalls: the array advances (en = 1) only in a cycle where the step's input beat is there (when it needs one)
// and the result row reaching the output this step can be taken (output FIFO not full when it must be pushed).
// cycle_count counts the steps the array advanced while a fold was in progress (load and stream steps), so
// valid gaps and backpressure do not change it. sim's compute_cycles (index of the last busy cycle) is
// cycle_count - 1.
//
// Partial sums across row folds: a buffer of MAX_M rows x C accumulators. Row fold 0 writes it, later row folds
// read-modify-write it, the last row fold sends buffer + array result to the output FIFO instead.
`default_nettype none
module lowbit_gemm_top #(
    parameter PE_KIND   = 0,    // 0 fixed (lowbit_mac_pe), 1 Bit-Fusion (lowbit_fusion_pe), 2 Stripes, 3 Loom
    parameter ROWS      = 4,    // R
    parameter COLS      = 4,    // C
    parameter W_BITS    = 8,    // PE_KIND 0; for 2 and 3 the widest runtime width is max(W_BITS, A_BITS)
    parameter A_BITS    = 8,    // PE_KIND 0 (and 2, 3 as above)
    parameter W_SIGNED  = 1,    // PE_KIND 0 only
    parameter A_SIGNED  = 1,    // PE_KIND 0 only
    parameter ACC_BITS  = 32,
    parameter MAX_M     = 256,  // largest M (psum buffer rows), >= 2
    parameter FOLD_BITS = 16,   // width of the fold-count config inputs
    parameter CNT_BITS  = 32,   // width of cycle_count
    parameter OUT_DEPTH = 2     // output FIFO entries (power of two, >= 2)
) (
    clk, rst_n, start, cfg_m, cfg_row_folds, cfg_col_folds, cfg_w_mode, cfg_a_mode, cfg_w_signed, cfg_a_signed,
    cfg_w_bits, cfg_a_bits, busy, in_valid, in_ready, in_data, out_valid, out_ready, out_data, out_last, cycle_count
);
    // Derived from the parameters above (localparams: they cannot be overridden).
    localparam SERIAL = (PE_KIND == 2) || (PE_KIND == 3);       // bit-serial PEs: an element takes S beats
    localparam SB     = (W_BITS > A_BITS) ? W_BITS : A_BITS;    // bit-serial: the widest runtime width
    localparam NB     = $clog2(SB + 1);                         // a runtime width, 1..SB
    localparam IB     = (SB > 1) ? $clog2(SB) : 1;              // a bit index, 0..SB-1
    localparam S_MAX  = (PE_KIND == 3) ? SB * SB : SERIAL ? SB : 1;  // most beats per element
    localparam W_SLOT = (PE_KIND == 1) ? 32 : SERIAL ? SB : W_BITS;
    localparam A_SLOT = (PE_KIND == 1) ? 32 : SERIAL ? SB : A_BITS;  // on the input stream (the array adds beats)
    localparam IN_BITS = (COLS * W_SLOT > ROWS * A_SLOT) ? COLS * W_SLOT : ROWS * A_SLOT;
    localparam M_BITS = $clog2(MAX_M) + 1;  // cfg_m can hold MAX_M and values above it (refused)

    input  wire                     clk;
    input  wire                     rst_n;         // synchronous, active low
    // run-time configuration: sampled on start (ignored unless idle, 1 <= cfg_m <= MAX_M and both folds >= 1)
    input  wire                     start;
    input  wire [M_BITS-1:0]        cfg_m;         // M: activation vectors per fold
    input  wire [FOLD_BITS-1:0]     cfg_row_folds; // KF = ceil(Kp / ROWS)
    input  wire [FOLD_BITS-1:0]     cfg_col_folds; // NF = ceil(N / COLS)
    input  wire [1:0]               cfg_w_mode;    // PE_KIND 1: weight width 0/1/2 = 2/4/8 bits
    input  wire [1:0]               cfg_a_mode;    // PE_KIND 1: activation width 0/1/2 = 2/4/8 bits
    input  wire                     cfg_w_signed;  // PE_KIND 1: weights two's complement
    input  wire                     cfg_a_signed;  // PE_KIND 1: activations two's complement
    input  wire [NB-1:0]            cfg_w_bits;    // PE_KIND 2, 3: weight width, 1..SB
    input  wire [NB-1:0]            cfg_a_bits;    // PE_KIND 2, 3: activation width, 1..SB
    output wire                     busy;          // a GEMM is in progress (start .. last result row taken)
    // input stream: weight beats and activation beats
    input  wire                     in_valid;
    output wire                     in_ready;
    input  wire [IN_BITS-1:0]       in_data;
    // output stream: one row of C accumulators per beat
    output wire                     out_valid;
    input  wire                     out_ready;
    output wire [COLS*ACC_BITS-1:0] out_data;
    output wire                     out_last;
    // busy-cycle counter (cleared on start; holds its value when the GEMM is done)
    output wire [CNT_BITS-1:0]      cycle_count;

    localparam S_IDLE = 2'd0, S_LOAD = 2'd1, S_STREAM = 2'd2, S_DRAIN = 2'd3;
    localparam IDX_BITS = $clog2(MAX_M);                        // row index m
    localparam T_NEED   = $clog2(MAX_M * S_MAX + ROWS + COLS); // step within a phase: 0 .. M*S + R + C - 3
    localparam T_BITS   = (T_NEED > M_BITS) ? T_NEED : M_BITS;  // (>= M_BITS keeps the extensions below legal)
    localparam PIPE     = ROWS + COLS - 1;                      // steps from a_left to y_bottom
    localparam TOK_BITS = IDX_BITS + 4;                         // {m, final, last, first, valid}
    localparam OUT_BITS = COLS * ACC_BITS;
    localparam PTR_BITS = $clog2(OUT_DEPTH);

    // ---- configuration registers and control state --------------------------------------------------------------
    reg [1:0]           state;
    reg [T_BITS-1:0]    t;           // step within the current phase
    reg [M_BITS-1:0]    m_q;
    reg [T_BITS:0]      ms_q;           // M * S: the stream steps that feed beats
    reg [T_BITS:0]      t_stream_last;  // M * S + R + C - 3
    reg [FOLD_BITS-1:0] kf_q, nf_q;  // fold counts
    reg [FOLD_BITS-1:0] rf, cf;      // current row fold, column fold
    reg [1:0]           w_mode_q, a_mode_q;
    reg                 w_signed_q, a_signed_q;
    reg [NB-1:0]        w_bits_q, a_bits_q;
    reg [CNT_BITS-1:0]  cnt;

    // Widths: T_BITS >= M_BITS, so m values are zero-extended by one extra bit to T_BITS+1 and compared there.
    localparam integer      LOAD_LAST_I = ROWS - 1;          // last load step
    localparam integer      TAIL_I      = ROWS + COLS - 3;   // last stream step minus M (-1 for a 1 x 1 array)
    localparam integer      MAX_M_I     = MAX_M;
    localparam [T_BITS-1:0] T_LOAD_LAST = LOAD_LAST_I[T_BITS-1:0];
    localparam [T_BITS:0]   T_TAIL      = TAIL_I[T_BITS:0];  // two's complement: M + T_TAIL wraps to M - 1
    localparam [M_BITS-1:0] M_LIMIT     = MAX_M_I[M_BITS-1:0];
    wire [T_BITS:0] cfg_m_ext = {{(T_BITS-M_BITS+1){1'b0}}, cfg_m};
    wire [T_BITS:0] m_ext     = {{(T_BITS-M_BITS+1){1'b0}}, m_q};
    wire [T_BITS:0] t_ext     = {1'b0, t};
    // beats per element: 1, a_bits (Stripes) or a_bits * w_bits (Loom); M * S stream steps feed the array
    wire [2*NB-1:0] cfg_s     = (PE_KIND == 3) ? cfg_a_bits * cfg_w_bits
                              : SERIAL ? {{NB{1'b0}}, cfg_a_bits} : {{(2*NB-1){1'b0}}, 1'b1};
    /* verilator lint_off WIDTHTRUNC */  // M * S < MAX_M * S_MAX fits T_BITS + 1 bits
    wire [T_BITS:0] cfg_ms    = cfg_m_ext * cfg_s;
    /* verilator lint_on WIDTHTRUNC */

    wire cfg_ok = (cfg_m != {M_BITS{1'b0}}) && (cfg_m <= M_LIMIT)
                  && (cfg_row_folds != {FOLD_BITS{1'b0}}) && (cfg_col_folds != {FOLD_BITS{1'b0}})
                  && (!SERIAL || (cfg_w_bits != {NB{1'b0}} && cfg_a_bits != {NB{1'b0}}
                                  && cfg_w_bits <= SB[NB-1:0] && cfg_a_bits <= SB[NB-1:0]));

    // ---- result tokens: travel alongside the data, PIPE steps from a_left to y_bottom ---------------------------
    reg [TOK_BITS-1:0] tok [0:PIPE-1];  // tok[0] is the newest
    wire [TOK_BITS-1:0] tok_end   = tok[PIPE-1];
    wire                tok_valid = tok_end[0];
    wire                tok_first = tok_end[1];   // first row fold: overwrite the psum buffer row
    wire                tok_last  = tok_end[2];   // last row fold: send the row to the output
    wire                tok_final = tok_end[3];   // the GEMM's final output row
    wire [IDX_BITS-1:0] tok_m     = tok_end[TOK_BITS-1:4];

    // ---- output FIFO ----------------------------------------------------------------------------------------------
    reg [OUT_BITS:0]   fifo [0:OUT_DEPTH-1];  // {last, data}
    reg [PTR_BITS-1:0] wr_ptr, rd_ptr;
    reg [PTR_BITS:0]   count;
    localparam [PTR_BITS:0] FIFO_FULL = OUT_DEPTH;
    wire fifo_full = (count == FIFO_FULL);

    // ---- step control ---------------------------------------------------------------------------------------------
    wire in_fold  = (state == S_LOAD) || (state == S_STREAM);
    wire feeding  = (state == S_STREAM) && (t_ext < ms_q);   // stream steps 0 .. M*S-1 feed a beat
    wire first_beat, last_beat;                               // of an element (always both unless SERIAL)
    wire need_in  = (state == S_LOAD) || (feeding && first_beat);  // the element's vector is on in_data
    wire out_hold = tok_valid && tok_last && fifo_full;  // the result row cannot be pushed this step
    wire step_ok  = (state != S_IDLE) && !out_hold;
    wire en       = step_ok && (!need_in || in_valid);   // the array advances this cycle

    assign in_ready    = step_ok && need_in;
    assign busy        = (state != S_IDLE);
    assign cycle_count = cnt;

    // ---- the array --------------------------------------------------------------------------------------------
    wire [OUT_BITS-1:0] y_row;
    wire [IDX_BITS-1:0] elem;                                 // the element (vector index m) being fed
    localparam ARR_A_SLOT = SERIAL ? SB + 1 + 2 * IB : A_SLOT;   // the array's activation slot
    wire [ROWS*ARR_A_SLOT-1:0] a_vec;
    generate
        if (SERIAL) begin : g_beats
            // an element's vector is taken on its first beat and held for the others; each row's slot carries the
            // beat {jw, ja, valid} with the value (lowbit_systolic_ws, lowbit_serial_pe)
            reg [ROWS*SB-1:0]   a_hold;
            reg [IB-1:0]        ja_q, jw_q;
            reg [IDX_BITS-1:0]  elem_q;
            wire [NB-1:0]       a_top = a_bits_q - 1'b1;
            wire [NB-1:0]       w_top = w_bits_q - 1'b1;
            /* verilator lint_off WIDTHEXPAND */
            wire ja_end = (ja_q == a_top);
            wire jw_end = (PE_KIND != 3) || (jw_q == w_top);
            /* verilator lint_on WIDTHEXPAND */
            assign first_beat = (ja_q == {IB{1'b0}}) && (jw_q == {IB{1'b0}});
            assign last_beat  = ja_end && jw_end;
            assign elem       = elem_q;
            wire [ROWS*SB-1:0] vals = first_beat ? in_data[ROWS*SB-1:0] : a_hold;
            genvar r;
            for (r = 0; r < ROWS; r = r + 1) begin : g_row
                assign a_vec[r*ARR_A_SLOT +: ARR_A_SLOT] = feeding ? {jw_q, ja_q, 1'b1, vals[r*SB +: SB]}
                                                                   : {ARR_A_SLOT{1'b0}};
            end
            always @(posedge clk) begin
                if (!rst_n || state != S_STREAM) begin
                    ja_q   <= {IB{1'b0}};
                    jw_q   <= {IB{1'b0}};
                    elem_q <= {IDX_BITS{1'b0}};
                end else if (en && feeding) begin
                    if (first_beat) a_hold <= in_data[ROWS*SB-1:0];
                    if (last_beat) begin
                        ja_q   <= {IB{1'b0}};
                        jw_q   <= {IB{1'b0}};
                        elem_q <= elem_q + 1'b1;
                    end else if (ja_end) begin
                        ja_q <= {IB{1'b0}};
                        jw_q <= jw_q + 1'b1;
                    end else begin
                        ja_q <= ja_q + 1'b1;
                    end
                end
            end
        end else begin : g_vectors
            assign first_beat = 1'b1;
            assign last_beat  = 1'b1;
            assign elem       = t[IDX_BITS-1:0];
            assign a_vec      = feeding ? in_data[ROWS*A_SLOT-1:0] : {ROWS*A_SLOT{1'b0}};
        end
    endgenerate

    lowbit_systolic_ws #(
        .PE_KIND(PE_KIND), .ROWS(ROWS), .COLS(COLS), .W_BITS(W_BITS), .A_BITS(A_BITS),
        .W_SIGNED(W_SIGNED), .A_SIGNED(A_SIGNED), .ACC_BITS(ACC_BITS)
    ) array (
        .clk(clk), .rst_n(rst_n), .en(en), .load_w(state == S_LOAD),
        .w_mode(w_mode_q), .a_mode(a_mode_q), .w_signed(w_signed_q), .a_signed(a_signed_q),
        .w_width(w_bits_q), .a_width(a_bits_q),
        .w_top(in_data[COLS*W_SLOT-1:0]), .a_left(a_vec), .y_bottom(y_row));

    // ---- partial-sum buffer: row m holds C accumulators ---------------------------------------------------------
    reg  [OUT_BITS-1:0] psum_mem [0:MAX_M-1];
    wire [OUT_BITS-1:0] psum_old = psum_mem[tok_m];
    wire [OUT_BITS-1:0] psum_new;  // buffer row + array row, per column, modulo 2^ACC_BITS
    genvar c;
    generate
        for (c = 0; c < COLS; c = c + 1) begin : g_acc
            assign psum_new[c*ACC_BITS +: ACC_BITS] = tok_first ? y_row[c*ACC_BITS +: ACC_BITS]
                : psum_old[c*ACC_BITS +: ACC_BITS] + y_row[c*ACC_BITS +: ACC_BITS];
        end
    endgenerate

    wire push = en && tok_valid && tok_last;
    wire pop  = out_valid && out_ready;

    always @(posedge clk) begin
        if (en && tok_valid && !tok_last) psum_mem[tok_m] <= psum_new;
    end

    // ---- output FIFO ----------------------------------------------------------------------------------------------
    wire [OUT_BITS:0] fifo_head = fifo[rd_ptr];
    assign out_valid = (count != {(PTR_BITS+1){1'b0}});
    assign out_data  = fifo_head[OUT_BITS-1:0];
    assign out_last  = fifo_head[OUT_BITS];

    always @(posedge clk) begin
        if (push) fifo[wr_ptr] <= {tok_final, psum_new};
    end

    always @(posedge clk) begin
        if (!rst_n) begin
            wr_ptr <= {PTR_BITS{1'b0}};
            rd_ptr <= {PTR_BITS{1'b0}};
            count  <= {(PTR_BITS+1){1'b0}};
        end else begin
            if (push) wr_ptr <= wr_ptr + 1'b1;
            if (pop)  rd_ptr <= rd_ptr + 1'b1;
            if (push && !pop)      count <= count + 1'b1;
            else if (pop && !push) count <= count - 1'b1;
        end
    end

    // ---- token pipeline (advances with the array) ------------------------------------------------------------
    // A token enters with an element's last beat on a_left (the vector itself for one-beat PEs) and reaches
    // tok_end exactly when that element's de-skewed result row is on y_bottom.
    wire                inj_first = (rf == {FOLD_BITS{1'b0}});
    wire                inj_last  = (rf == kf_q - 1'b1);
    wire [T_BITS:0]     elem_ext  = {{(T_BITS+1-IDX_BITS){1'b0}}, elem};
    wire                inj_final = inj_last && (cf == nf_q - 1'b1)
                                    && (elem_ext + 1'b1 == m_ext);
    wire [TOK_BITS-1:0] tok_in    = (feeding && last_beat) ? {elem, inj_final, inj_last, inj_first, 1'b1}
                                                           : {TOK_BITS{1'b0}};
    integer i;
    always @(posedge clk) begin
        if (!rst_n) begin
            for (i = 0; i < PIPE; i = i + 1) tok[i] <= {TOK_BITS{1'b0}};
        end else if (en) begin
            tok[0] <= tok_in;
            for (i = 1; i < PIPE; i = i + 1) tok[i] <= tok[i-1];
        end
    end

    // ---- fold sequencing and the busy-cycle counter -------------------------------------------------------------
    always @(posedge clk) begin
        if (!rst_n) begin
            state         <= S_IDLE;
            t             <= {T_BITS{1'b0}};
            m_q           <= {M_BITS{1'b0}};
            ms_q          <= {(T_BITS+1){1'b0}};
            t_stream_last <= {(T_BITS+1){1'b0}};
            kf_q          <= {FOLD_BITS{1'b0}};
            nf_q          <= {FOLD_BITS{1'b0}};
            rf            <= {FOLD_BITS{1'b0}};
            cf            <= {FOLD_BITS{1'b0}};
            w_mode_q      <= 2'd0;
            a_mode_q      <= 2'd0;
            w_signed_q    <= 1'b0;
            a_signed_q    <= 1'b0;
            w_bits_q      <= {NB{1'b0}};
            a_bits_q      <= {NB{1'b0}};
            cnt           <= {CNT_BITS{1'b0}};
        end else if (state == S_IDLE) begin
            if (start && cfg_ok) begin
                state         <= S_LOAD;
                t             <= {T_BITS{1'b0}};
                m_q           <= cfg_m;
                ms_q          <= cfg_ms;
                t_stream_last <= cfg_ms + T_TAIL;
                kf_q          <= cfg_row_folds;
                nf_q          <= cfg_col_folds;
                rf            <= {FOLD_BITS{1'b0}};
                cf            <= {FOLD_BITS{1'b0}};
                w_mode_q      <= cfg_w_mode;
                a_mode_q      <= cfg_a_mode;
                w_signed_q    <= cfg_w_signed;
                a_signed_q    <= cfg_a_signed;
                w_bits_q      <= cfg_w_bits;
                a_bits_q      <= cfg_a_bits;
                cnt           <= {CNT_BITS{1'b0}};
            end
        end else if (en) begin
            if (in_fold) cnt <= cnt + 1'b1;
            case (state)
                S_LOAD: begin
                    if (t == T_LOAD_LAST) begin
                        state <= S_STREAM;
                        t     <= {T_BITS{1'b0}};
                    end else begin
                        t <= t + 1'b1;
                    end
                end
                S_STREAM: begin
                    if (t_ext == t_stream_last) begin
                        t <= {T_BITS{1'b0}};
                        if (rf != kf_q - 1'b1) begin          // next row fold
                            rf    <= rf + 1'b1;
                            state <= S_LOAD;
                        end else if (cf != nf_q - 1'b1) begin // next column fold
                            rf    <= {FOLD_BITS{1'b0}};
                            cf    <= cf + 1'b1;
                            state <= S_LOAD;
                        end else begin                        // last fold: one step to take the last row
                            state <= S_DRAIN;
                        end
                    end else begin
                        t <= t + 1'b1;
                    end
                end
                default: state <= S_IDLE;                     // S_DRAIN: the last result row was taken
            endcase
        end
    end

    // ---- parameter checks, at elaboration: Verilator reports the message ($error in a generate block); other tools
    // stop on the missing module whose name states the rule (tests/rtl/test_params.py drives every check) --------
    generate
        if (PE_KIND < 0 || PE_KIND > 3) begin : g_param_error_0
`ifdef VERILATOR
            $error("lowbit_gemm_top: parameter PE_KIND = %0d must be 0 (fixed), 1 (Bit Fusion), 2 (Stripes) or 3 (Loom)",
                   PE_KIND);
`else
            lowbit_param_error__PE_KIND_must_be_0_to_3 stop ();
`endif
        end
        if (ROWS < 1) begin : g_param_error_1
`ifdef VERILATOR
            $error("lowbit_gemm_top: parameter ROWS = %0d must be >= 1", ROWS);
`else
            lowbit_param_error__ROWS_must_be_at_least_1 stop ();
`endif
        end
        if (COLS < 1) begin : g_param_error_2
`ifdef VERILATOR
            $error("lowbit_gemm_top: parameter COLS = %0d must be >= 1", COLS);
`else
            lowbit_param_error__COLS_must_be_at_least_1 stop ();
`endif
        end
        if (MAX_M < 2) begin : g_param_error_3
`ifdef VERILATOR
            $error("lowbit_gemm_top: parameter MAX_M = %0d must be >= 2", MAX_M);
`else
            lowbit_param_error__MAX_M_must_be_at_least_2 stop ();
`endif
        end
        if (FOLD_BITS < 1) begin : g_param_error_4
`ifdef VERILATOR
            $error("lowbit_gemm_top: parameter FOLD_BITS = %0d must be >= 1", FOLD_BITS);
`else
            lowbit_param_error__FOLD_BITS_must_be_at_least_1 stop ();
`endif
        end
        if (CNT_BITS < 1) begin : g_param_error_5
`ifdef VERILATOR
            $error("lowbit_gemm_top: parameter CNT_BITS = %0d must be >= 1", CNT_BITS);
`else
            lowbit_param_error__CNT_BITS_must_be_at_least_1 stop ();
`endif
        end
        if (OUT_DEPTH < 2 || ((OUT_DEPTH) & ((OUT_DEPTH) - 1)) != 0) begin : g_param_error_6
`ifdef VERILATOR
            $error("lowbit_gemm_top: parameter OUT_DEPTH = %0d must be a power of two >= 2", OUT_DEPTH);
`else
            lowbit_param_error__OUT_DEPTH_must_be_a_power_of_two_at_least_2 stop ();
`endif
        end
    endgenerate
endmodule
`default_nettype wire
