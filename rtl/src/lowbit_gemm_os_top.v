// lowbit_gemm_os_top: a GEMM Y[M,N] = A[M,K] x B[K,N] on an output-stationary lowbit_systolic_os array
// (Verilog-2005), with the streams of lowbit_gemm_top. docs/rtl.md, section "Output-stationary array", is the full
// specification; in short:
//
// Loop nest (sim's os mapping): a fold is one (column fold c, row fold s): the array's rows hold R outputs m of M
// (MF = ceil(M/R) row folds, the last M_LAST rows long), its columns C outputs n of N (NF = ceil(N/C)), and the
// reduction streams through, Kp = ceil(K/pack) slots. cfg_order is sim.mapping.ORDERS' index: 1 = (c, s, r)
// (SCALE-Sim's), 4 = (s, c, r).
// Streams (valid/ready, each input with a one-beat register):
//   weights (w_*): per fold Kp beats, slot k's weights of the fold's C columns (bits [c*W_SLOT +: W_SLOT]);
//   activations (in_*): per fold Kp beats, slot k's activations of the fold's R rows (bits [r*A_SLOT +: A_SLOT]);
//     beat k of both streams is taken on the same step;
//   outputs (out_*): per fold one beat per row m of the fold, in row order: C raw accumulators, out_fold its
//     column fold, out_last on the GEMM's final beat.
// Timing (steps are cycles with en = 1; cycle_count counts the folds' steps; measured = cycle_count - 1):
//   OVERLAP 0: each fold takes Kp + R + C - 2 steps (its last product leaves PE(R-1, C-1)), SCALE-Sim's os count;
//   OVERLAP 1: a fold starts max(Kp, R) steps after the previous one (the result buses are free again), the last
//     one takes Kp + R + C - 2: sim's weight_preload: overlapped for os (eq. 2'').
// The top is busy until both the counted steps are over and the final result row has entered the output FIFO
// (after the counted steps, through uncounted drain steps, unless a short last fold's rows are out earlier).
`default_nettype none
module lowbit_gemm_os_top #(
    parameter PE_KIND   = 0,    // 0 fixed (lowbit_mac_pe), 1 Bit-Fusion (lowbit_fusion_pe)
    parameter ROWS      = 4,    // R
    parameter COLS      = 4,    // C
    parameter W_BITS    = 8,    // PE_KIND 0
    parameter A_BITS    = 8,    // PE_KIND 0
    parameter W_SIGNED  = 1,    // PE_KIND 0 only
    parameter A_SIGNED  = 1,    // PE_KIND 0 only
    parameter ACC_BITS  = 32,
    parameter OVERLAP   = 0,    // 0: folds back to back after the array drains; 1: a fold every max(Kp, R) steps
    parameter FOLD_BITS = 16,   // width of the fold and slot counts
    parameter CNT_BITS  = 32,
    parameter OUT_DEPTH = 2     // output FIFO entries (power of two, >= 2)
) (
    clk, rst_n, start, cfg_order, cfg_k_slots, cfg_col_folds, cfg_m_folds, cfg_m_last, cfg_w_mode, cfg_a_mode,
    cfg_w_signed, cfg_a_signed, busy, w_valid, w_ready, w_data, in_valid, in_ready, in_data, out_valid, out_ready,
    out_data, out_last, out_fold, cycle_count
);
    localparam W_SLOT   = (PE_KIND == 1) ? 32 : W_BITS;
    localparam A_SLOT   = (PE_KIND == 1) ? 32 : A_BITS;
    localparam R_BITS   = $clog2(ROWS + 1);                  // a row count, 1..R
    localparam OUT_BITS = COLS * ACC_BITS;
    localparam PTR_BITS = $clog2(OUT_DEPTH);
    localparam TW       = FOLD_BITS + 2;                     // step arithmetic: Kp + R + C < 2^(FOLD_BITS+1)

    input  wire                     clk;
    input  wire                     rst_n;
    input  wire                     start;
    input  wire [2:0]               cfg_order;      // 1: (c, s, r), 4: (s, c, r)
    input  wire [FOLD_BITS-1:0]     cfg_k_slots;    // Kp
    input  wire [FOLD_BITS-1:0]     cfg_col_folds;  // NF
    input  wire [FOLD_BITS-1:0]     cfg_m_folds;    // MF
    input  wire [R_BITS-1:0]        cfg_m_last;     // rows of the last row fold, 1..R
    input  wire [1:0]               cfg_w_mode;     // PE_KIND 1
    input  wire [1:0]               cfg_a_mode;
    input  wire                     cfg_w_signed;
    input  wire                     cfg_a_signed;
    output wire                     busy;
    input  wire                     w_valid;
    output wire                     w_ready;
    input  wire [COLS*W_SLOT-1:0]   w_data;
    input  wire                     in_valid;
    output wire                     in_ready;
    input  wire [ROWS*A_SLOT-1:0]   in_data;
    output wire                     out_valid;
    input  wire                     out_ready;
    output wire [OUT_BITS-1:0]      out_data;
    output wire                     out_last;
    output wire [FOLD_BITS-1:0]     out_fold;
    output wire [CNT_BITS-1:0]      cycle_count;

    localparam S_IDLE = 2'd0, S_STREAM = 2'd1, S_DRAIN = 2'd2;
    localparam integer R_I = ROWS, RC_I = ROWS + COLS - 3;
    localparam [TW-1:0]     T_R   = R_I[TW-1:0];
    localparam [TW-1:0]     T_RC  = RC_I[TW-1:0];      // x + T_RC = x - 1 for a 1 x 1 array (two's complement)
    localparam [R_BITS-1:0] ROWS_R = R_I[R_BITS-1:0];

    reg [1:0]           state;
    reg [TW-1:0]        t;
    reg                 c_outer;                       // order 1: column folds outer
    reg [FOLD_BITS-1:0] kp_q, nf_q, mf_q;
    reg [R_BITS-1:0]    m_last_q;
    reg [1:0]           w_mode_q, a_mode_q;
    reg                 w_signed_q, a_signed_q;
    reg [FOLD_BITS-1:0] ci, si;                        // the fold being fed
    reg [FOLD_BITS-1:0] oc, os;                        // the fold whose results leave next
    reg [R_BITS-1:0]    orow;                          // results of that fold already pushed
    reg                 out_done;                      // the final result row has entered the FIFO
    reg [CNT_BITS-1:0]  cnt;

    /* verilator lint_off CMPCONST */  // cfg_m_last <= ROWS is constant when R_BITS holds only ROWS
    wire cfg_ok = (cfg_order == 3'd1 || cfg_order == 3'd4)
                  && (cfg_k_slots != {FOLD_BITS{1'b0}}) && (cfg_col_folds != {FOLD_BITS{1'b0}})
                  && (cfg_m_folds != {FOLD_BITS{1'b0}})
                  && (cfg_m_last != {R_BITS{1'b0}}) && (cfg_m_last <= ROWS_R);
    /* verilator lint_on CMPCONST */

    // ---- the fold loop (an odometer over c and s) -------------------------------------------------------------
    wire c_end    = (ci == nf_q - 1'b1);
    wire s_end    = (si == mf_q - 1'b1);
    wire has_next = !(c_end && s_end);
    wire [R_BITS-1:0] rows_f = s_end ? m_last_q : ROWS_R;     // valid rows of the fold being fed
    wire [TW-1:0] kp      = {2'b00, kp_q};
    wire [TW-1:0] t_tail  = kp + T_RC;                       // Kp + R + C - 3
    wire [TW-1:0] t_slot  = (kp > T_R) ? kp - 1'b1 : T_R - 1'b1;  // max(Kp, R) - 1
    wire [TW-1:0] t_last  = (OVERLAP != 0 && has_next) ? t_slot : t_tail;
    wire          feeding = (state == S_STREAM) && (t < kp);

    // ---- one-beat input registers --------------------------------------------------------------------------
    reg                   a_full, w_full;
    reg [ROWS*A_SLOT-1:0] a_buf;
    reg [COLS*W_SLOT-1:0] w_buf;

    // ---- output FIFO and the result row reaching it ------------------------------------------------------
    reg [OUT_BITS+FOLD_BITS:0] fifo [0:OUT_DEPTH-1];  // {fold, last, data}
    reg [PTR_BITS-1:0] wr_ptr, rd_ptr;
    reg [PTR_BITS:0]   count;
    localparam [PTR_BITS:0] FIFO_FULL = OUT_DEPTH;
    wire fifo_full = (count == FIFO_FULL);
    wire [OUT_BITS-1:0] y_row;
    wire                y_valid;

    wire out_hold = y_valid && fifo_full;
    wire step_ok  = (state != S_IDLE) && !out_hold;
    wire en       = step_ok && (!feeding || (a_full && w_full));
    wire take     = en && feeding;                      // both beats of slot t are used this step

    assign in_ready    = !a_full || take;
    assign w_ready     = !w_full || take;
    assign busy        = (state != S_IDLE);
    assign cycle_count = cnt;

    always @(posedge clk) begin
        if (!rst_n) begin
            a_full <= 1'b0;
            w_full <= 1'b0;
        end else begin
            if (in_valid && in_ready) begin
                a_buf  <= in_data;
                a_full <= 1'b1;
            end else if (take) begin
                a_full <= 1'b0;
            end
            if (w_valid && w_ready) begin
                w_buf  <= w_data;
                w_full <= 1'b1;
            end else if (take) begin
                w_full <= 1'b0;
            end
        end
    end

    // ---- the array: rows past the fold's valid rows get no values and no flags -----------------------------------
    wire [ROWS*(A_SLOT+2)-1:0] a_vec;
    genvar r;
    generate
        for (r = 0; r < ROWS; r = r + 1) begin : g_row
            localparam integer RI = r;
            wire live = feeding && (RI[R_BITS-1:0] < rows_f);
            wire first = live && (t == {TW{1'b0}});
            wire last  = live && (t == kp - 1'b1);
            assign a_vec[r*(A_SLOT+2) +: A_SLOT+2] = {last, first, live ? a_buf[r*A_SLOT +: A_SLOT]
                                                                     : {A_SLOT{1'b0}}};
        end
    endgenerate

    lowbit_systolic_os #(
        .PE_KIND(PE_KIND), .ROWS(ROWS), .COLS(COLS), .W_BITS(W_BITS), .A_BITS(A_BITS),
        .W_SIGNED(W_SIGNED), .A_SIGNED(A_SIGNED), .ACC_BITS(ACC_BITS)
    ) array (
        .clk(clk), .rst_n(rst_n), .en(en),
        .w_mode(w_mode_q), .a_mode(a_mode_q), .w_signed(w_signed_q), .a_signed(a_signed_q),
        .w_top(feeding ? w_buf : {COLS*W_SLOT{1'b0}}), .a_left(a_vec), .y_bottom(y_row), .y_valid(y_valid));

    // ---- results: the output side follows the folds in the same order -----------------------------------------
    wire oc_end     = (oc == nf_q - 1'b1);
    wire os_end     = (os == mf_q - 1'b1);
    wire [R_BITS-1:0] rows_o = os_end ? m_last_q : ROWS_R;
    wire o_fold_end = (orow == rows_o - 1'b1);
    wire o_final    = o_fold_end && oc_end && os_end;
    wire push       = en && y_valid;
    wire pop        = out_valid && out_ready;

    wire [OUT_BITS+FOLD_BITS:0] fifo_head = fifo[rd_ptr];
    assign out_valid = (count != {(PTR_BITS+1){1'b0}});
    assign out_data  = fifo_head[OUT_BITS-1:0];
    assign out_last  = fifo_head[OUT_BITS];
    assign out_fold  = fifo_head[OUT_BITS+1 +: FOLD_BITS];

    always @(posedge clk) begin
        if (push) fifo[wr_ptr] <= {oc, o_final, y_row};
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

    // ---- control ------------------------------------------------------------------------------------------------
    always @(posedge clk) begin
        if (!rst_n) begin
            state      <= S_IDLE;
            t          <= {TW{1'b0}};
            c_outer    <= 1'b1;
            kp_q       <= {FOLD_BITS{1'b0}};
            nf_q       <= {FOLD_BITS{1'b0}};
            mf_q       <= {FOLD_BITS{1'b0}};
            m_last_q   <= {R_BITS{1'b0}};
            w_mode_q   <= 2'd0;
            a_mode_q   <= 2'd0;
            w_signed_q <= 1'b0;
            a_signed_q <= 1'b0;
            ci         <= {FOLD_BITS{1'b0}};
            si         <= {FOLD_BITS{1'b0}};
            oc         <= {FOLD_BITS{1'b0}};
            os         <= {FOLD_BITS{1'b0}};
            orow       <= {R_BITS{1'b0}};
            out_done   <= 1'b0;
            cnt        <= {CNT_BITS{1'b0}};
        end else if (state == S_IDLE) begin
            if (start && cfg_ok) begin
                state      <= S_STREAM;
                t          <= {TW{1'b0}};
                c_outer    <= (cfg_order == 3'd1);
                kp_q       <= cfg_k_slots;
                nf_q       <= cfg_col_folds;
                mf_q       <= cfg_m_folds;
                m_last_q   <= cfg_m_last;
                w_mode_q   <= cfg_w_mode;
                a_mode_q   <= cfg_a_mode;
                w_signed_q <= cfg_w_signed;
                a_signed_q <= cfg_a_signed;
                ci         <= {FOLD_BITS{1'b0}};
                si         <= {FOLD_BITS{1'b0}};
                oc         <= {FOLD_BITS{1'b0}};
                os         <= {FOLD_BITS{1'b0}};
                orow       <= {R_BITS{1'b0}};
                out_done   <= 1'b0;
                cnt        <= {CNT_BITS{1'b0}};
            end
        end else if (en) begin
            if (state == S_STREAM) begin
                cnt <= cnt + 1'b1;
                if (t == t_last) begin
                    t <= {TW{1'b0}};
                    if (has_next) begin                  // the next fold: the inner loop steps, the outer on its wrap
                        if (c_outer) begin
                            si <= s_end ? {FOLD_BITS{1'b0}} : si + 1'b1;
                            if (s_end) ci <= ci + 1'b1;
                        end else begin
                            ci <= c_end ? {FOLD_BITS{1'b0}} : ci + 1'b1;
                            if (c_end) si <= si + 1'b1;
                        end
                    end else begin                       // a short last fold's results may already be out
                        state <= (out_done || (push && o_final)) ? S_IDLE : S_DRAIN;
                    end
                end else begin
                    t <= t + 1'b1;
                end
            end
            if (push) begin
                if (!o_fold_end) begin
                    orow <= orow + 1'b1;
                end else begin
                    orow <= {R_BITS{1'b0}};
                    if (c_outer) begin
                        os <= os_end ? {FOLD_BITS{1'b0}} : os + 1'b1;
                        if (os_end) oc <= oc + 1'b1;
                    end else begin
                        oc <= oc_end ? {FOLD_BITS{1'b0}} : oc + 1'b1;
                        if (oc_end) os <= os + 1'b1;
                    end
                    if (o_final) begin                   // the last result row enters the FIFO
                        out_done <= 1'b1;
                        if (state == S_DRAIN) state <= S_IDLE;
                    end
                end
            end
        end
    end

    // ---- parameter checks, at elaboration: Verilator reports the message ($error in a generate block); other tools
    // stop on the missing module whose name states the rule (tests/rtl/test_params.py drives every check) --------
    generate
        if (PE_KIND != 0 && PE_KIND != 1) begin : g_param_error_0
`ifdef VERILATOR
            $error("lowbit_gemm_os_top: parameter PE_KIND = %0d must be 0 (fixed) or 1 (Bit Fusion)", PE_KIND);
`else
            lowbit_param_error__PE_KIND_must_be_0_or_1 stop ();
`endif
        end
        if (ROWS < 1) begin : g_param_error_1
`ifdef VERILATOR
            $error("lowbit_gemm_os_top: parameter ROWS = %0d must be >= 1", ROWS);
`else
            lowbit_param_error__ROWS_must_be_at_least_1 stop ();
`endif
        end
        if (COLS < 1) begin : g_param_error_2
`ifdef VERILATOR
            $error("lowbit_gemm_os_top: parameter COLS = %0d must be >= 1", COLS);
`else
            lowbit_param_error__COLS_must_be_at_least_1 stop ();
`endif
        end
        if (FOLD_BITS < 1) begin : g_param_error_3
`ifdef VERILATOR
            $error("lowbit_gemm_os_top: parameter FOLD_BITS = %0d must be >= 1", FOLD_BITS);
`else
            lowbit_param_error__FOLD_BITS_must_be_at_least_1 stop ();
`endif
        end
        if (CNT_BITS < 1) begin : g_param_error_4
`ifdef VERILATOR
            $error("lowbit_gemm_os_top: parameter CNT_BITS = %0d must be >= 1", CNT_BITS);
`else
            lowbit_param_error__CNT_BITS_must_be_at_least_1 stop ();
`endif
        end
        if (OUT_DEPTH < 2 || ((OUT_DEPTH) & ((OUT_DEPTH) - 1)) != 0) begin : g_param_error_5
`ifdef VERILATOR
            $error("lowbit_gemm_os_top: parameter OUT_DEPTH = %0d must be a power of two >= 2", OUT_DEPTH);
`else
            lowbit_param_error__OUT_DEPTH_must_be_a_power_of_two_at_least_2 stop ();
`endif
        end
        if (OVERLAP != 0 && OVERLAP != 1) begin : g_param_error_6
`ifdef VERILATOR
            $error("lowbit_gemm_os_top: parameter OVERLAP = %0d must be 0 (serial) or 1 (overlapped)", OVERLAP);
`else
            lowbit_param_error__OVERLAP_must_be_0_or_1 stop ();
`endif
        end
    endgenerate
endmodule
`default_nettype wire
