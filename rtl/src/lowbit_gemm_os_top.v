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
//     column fold, out_block its reduction block, out_block_last the block is the last, out_row the row in the fold;
//     out_last on the GEMM's final beat.
// Reduction blocks (MAX_BLOCKS > 1; PTQ-SL's input blocks): the reduction of every output tile runs as
// cfg_blocks_m1 + 1 folds, the innermost loop (sim's r), block b streaming cfg_k_slots[b] slots; each fold drains
// its block's own sums, which the host (lowbit_layer_top) rescales and adds. Without blocks cfg_k_slots is Kp.
// Timing (steps are cycles with en = 1; cycle_count counts the folds' steps; measured = cycle_count - 1). A slot
// takes S steps: 1, a_bits (Stripes) or a_bits * w_bits (Loom); its beats stay in the input registers meanwhile.
// The timing profile is run-time configuration (the array is the same for both):
//   cfg_overlap = 0: each fold takes S*Kp + R + C - 2 steps (its last product leaves PE(R-1, C-1)), SCALE-Sim's os
//     count;
//   cfg_overlap = 1: a fold starts S*Kp + max(0, R - S*Kp_next) steps before the next one (its results then cannot meet
//     the next fold's on the result buses; max(S*Kp, R) for equal folds), the last one takes S*Kp + R + C - 2:
//     sim's weight_preload: overlapped for os (eq. 2'').
// The top is busy until both the counted steps are over and the final result row has entered the output FIFO
// (after the counted steps, through uncounted drain steps, unless a short last fold's rows are out earlier).
`default_nettype none
module lowbit_gemm_os_top #(
    parameter PE_KIND   = 0,    // 0 fixed (lowbit_mac_pe), 1 Bit-Fusion (lowbit_fusion_pe), 2 Stripes, 3 Loom
    parameter ROWS      = 4,    // R
    parameter COLS      = 4,    // C
    parameter W_BITS    = 8,    // PE_KIND 0; for 2 and 3 the widest runtime width is max(W_BITS, A_BITS)
    parameter A_BITS    = 8,    // PE_KIND 0 (and 2, 3 as above)
    parameter W_SIGNED  = 1,    // PE_KIND 0 only
    parameter A_SIGNED  = 1,    // PE_KIND 0 only
    parameter ACC_BITS  = 32,
    parameter FOLD_BITS = 16,   // width of the fold and slot counts
    parameter CNT_BITS  = 32,
    parameter OUT_DEPTH = 2,    // output FIFO entries (power of two, >= 2)
    parameter MAX_BLOCKS = 1    // most reduction blocks (cfg_k_slots entries), >= 1
) (
    clk, rst_n, start, cfg_order, cfg_k_slots, cfg_blocks_m1, cfg_col_folds, cfg_m_folds, cfg_m_last, cfg_overlap,
    cfg_w_mode, cfg_a_mode, cfg_w_signed, cfg_a_signed, cfg_w_bits, cfg_a_bits, busy, w_valid, w_ready, w_data,
    in_valid, in_ready, in_data, out_valid, out_ready, out_data, out_last, out_fold, out_block, out_block_last, out_row,
    cycle_count
);
    localparam SERIAL   = (PE_KIND == 2) || (PE_KIND == 3);
    localparam SB       = (W_BITS > A_BITS) ? W_BITS : A_BITS;  // bit-serial: the widest runtime width
    localparam NB       = $clog2(SB + 1);
    localparam IB       = (SB > 1) ? $clog2(SB) : 1;
    localparam W_SLOT   = (PE_KIND == 1) ? 32 : SERIAL ? SB : W_BITS;
    localparam A_SLOT   = (PE_KIND == 1) ? 32 : SERIAL ? SB : A_BITS;
    localparam V_SLOT   = SERIAL ? SB + 1 + 2 * IB : A_SLOT;  // the array's value slot (with the beat for serial)
    localparam R_BITS   = $clog2(ROWS + 1);                  // a row count, 1..R
    localparam OUT_BITS = COLS * ACC_BITS;
    localparam TW       = FOLD_BITS + 2 * NB + 2;            // step arithmetic: S*Kp + R + C fits
    localparam BB       = (MAX_BLOCKS > 1) ? $clog2(MAX_BLOCKS) : 1;  // a block index
    localparam integer B_TOP_I = MAX_BLOCKS - 1;
    localparam [BB-1:0] B_TOP  = B_TOP_I[BB-1:0];

    input  wire                     clk;
    input  wire                     rst_n;
    input  wire                     start;
    input  wire [2:0]               cfg_order;      // 1: (c, s, r), 4: (s, c, r)
    input  wire [MAX_BLOCKS*FOLD_BITS-1:0] cfg_k_slots;  // entry b: block b's slots Kp_b (without blocks: Kp)
    input  wire [BB-1:0]            cfg_blocks_m1;  // reduction blocks - 1 (0 without blocks)
    input  wire [FOLD_BITS-1:0]     cfg_col_folds;  // NF
    input  wire [FOLD_BITS-1:0]     cfg_m_folds;    // MF
    input  wire [R_BITS-1:0]        cfg_m_last;     // rows of the last row fold, 1..R
    input  wire                     cfg_overlap;    // 1: a fold every max(S*Kp, R) steps; 0: after the drain
    input  wire [1:0]               cfg_w_mode;     // PE_KIND 1
    input  wire [1:0]               cfg_a_mode;
    input  wire                     cfg_w_signed;
    input  wire                     cfg_a_signed;
    input  wire [NB-1:0]            cfg_w_bits;     // PE_KIND 2, 3: run-time widths, 1..SB
    input  wire [NB-1:0]            cfg_a_bits;
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
    output wire [BB-1:0]            out_block;      // the beat's reduction block
    output wire                     out_block_last; // that block is the last
    output wire [R_BITS-1:0]        out_row;        // the beat's row in its fold (0 .. rows - 1)
    output wire [CNT_BITS-1:0]      cycle_count;

    localparam S_IDLE = 2'd0, S_STREAM = 2'd1, S_DRAIN = 2'd2;
    localparam integer R_I = ROWS, RC_I = ROWS + COLS - 3;
    localparam [TW-1:0]     T_R   = R_I[TW-1:0];
    localparam [TW-1:0]     T_RC  = RC_I[TW-1:0];      // x + T_RC = x - 1 for a 1 x 1 array (two's complement)
    localparam [R_BITS-1:0] ROWS_R = R_I[R_BITS-1:0];

    reg [1:0]           state;
    reg [TW-1:0]        t;
    reg                 c_outer;                       // order 1: column folds outer
    reg                 ov_q;                          // the overlapped profile
    reg [MAX_BLOCKS*FOLD_BITS-1:0] kp_tab_q;          // slots per block
    reg [BB-1:0]        nb_q;                          // blocks - 1
    reg [BB-1:0]        bi, obi;                       // the block being fed / leaving next
    reg [FOLD_BITS-1:0] nf_q, mf_q;
    reg [R_BITS-1:0]    m_last_q;
    reg [1:0]           w_mode_q, a_mode_q;
    reg                 w_signed_q, a_signed_q;
    reg [NB-1:0]        w_bits_q, a_bits_q;
    reg [2*NB-1:0]      s_q;                           // steps per slot
    reg [FOLD_BITS-1:0] ci, si;                        // the fold being fed
    reg [FOLD_BITS-1:0] elem;                          // the slot being fed
    reg [FOLD_BITS-1:0] oc, os;                        // the fold whose results leave next
    reg [R_BITS-1:0]    orow;                          // results of that fold already pushed
    reg                 out_done;                      // the final result row has entered the FIFO
    reg [CNT_BITS-1:0]  cnt;

    /* verilator lint_off CMPCONST */  // cfg_m_last <= ROWS is constant when R_BITS holds only ROWS
    // every block in use has at least one slot
    reg blocks_ok;
    integer bj;
    always @(*) begin
        blocks_ok = (cfg_blocks_m1 <= B_TOP);
        for (bj = 0; bj < MAX_BLOCKS; bj = bj + 1)
            if (bj <= cfg_blocks_m1 && cfg_k_slots[bj*FOLD_BITS +: FOLD_BITS] == {FOLD_BITS{1'b0}}) blocks_ok = 1'b0;
    end
    wire cfg_ok = (cfg_order == 3'd1 || cfg_order == 3'd4)
                  && blocks_ok && (cfg_col_folds != {FOLD_BITS{1'b0}})
                  && (cfg_m_folds != {FOLD_BITS{1'b0}})
                  && (cfg_m_last != {R_BITS{1'b0}}) && (cfg_m_last <= ROWS_R)
                  && (!SERIAL || (cfg_w_bits != {NB{1'b0}} && cfg_a_bits != {NB{1'b0}}
                                  && cfg_w_bits <= SB[NB-1:0] && cfg_a_bits <= SB[NB-1:0]));
    /* verilator lint_on CMPCONST */
    wire [2*NB-1:0] cfg_s = (PE_KIND == 3) ? cfg_a_bits * cfg_w_bits
                          : SERIAL ? {{NB{1'b0}}, cfg_a_bits} : {{(2*NB-1){1'b0}}, 1'b1};

    // ---- the fold loop (an odometer over c and s) -------------------------------------------------------------
    wire c_end    = (ci == nf_q - 1'b1);
    wire s_end    = (si == mf_q - 1'b1);
    wire b_end    = (bi == nb_q);
    wire has_next = !(c_end && s_end && b_end);
    wire [FOLD_BITS-1:0] kp_q = kp_tab_q[bi*FOLD_BITS +: FOLD_BITS];  // the fold's slots
    wire [R_BITS-1:0] rows_f = s_end ? m_last_q : ROWS_R;     // valid rows of the fold being fed
    /* verilator lint_off WIDTHTRUNC */  // S * Kp fits TW bits
    wire [TW-1:0] skp     = {{(TW-FOLD_BITS){1'b0}}, kp_q} * s_q;   // the fold's stream steps
    /* verilator lint_on WIDTHTRUNC */
    wire [TW-1:0] t_tail  = skp + T_RC;                      // S*Kp + R + C - 3
    // overlapped: the next fold issues S*Kp + max(0, R - S*Kp_next) steps after this one (its rows' results must not
    // meet this fold's on the result buses); with equal folds that is max(S*Kp, R)
    wire [BB-1:0]        b_next  = b_end ? {BB{1'b0}} : bi + 1'b1;
    wire [FOLD_BITS-1:0] kp_next = kp_tab_q[b_next*FOLD_BITS +: FOLD_BITS];
    /* verilator lint_off WIDTHTRUNC */
    wire [TW-1:0] skp_next = {{(TW-FOLD_BITS){1'b0}}, kp_next} * s_q;
    /* verilator lint_on WIDTHTRUNC */
    wire [TW-1:0] t_slot  = (skp_next < T_R) ? skp + (T_R - skp_next) - 1'b1 : skp - 1'b1;
    wire [TW-1:0] t_last  = (ov_q && has_next) ? t_slot : t_tail;
    wire          feeding = (state == S_STREAM) && (t < skp);
    wire          last_beat;                             // of a slot (always, unless SERIAL)
    wire          elem_first = (elem == {FOLD_BITS{1'b0}});
    wire          elem_last  = (elem == kp_q - 1'b1);

    // ---- one-beat input registers (lowbit_in_reg) -----------------------------------------------------------
    wire                  a_full, w_full;
    wire [ROWS*A_SLOT-1:0] a_buf;
    wire [COLS*W_SLOT-1:0] w_buf;

    // ---- output FIFO (lowbit_out_fifo: {fold, last, data}) and the result row reaching it -------------------------
    wire fifo_full;
    wire [OUT_BITS-1:0] y_row;
    wire                y_valid;

    wire out_hold = y_valid && fifo_full;
    wire step_ok  = (state != S_IDLE) && !out_hold;
    wire en       = step_ok && (!feeding || (a_full && w_full));
    wire take     = en && feeding && last_beat;         // both beats of the slot are used up this step

    assign busy        = (state != S_IDLE);
    assign cycle_count = cnt;

    lowbit_in_reg #(.WIDTH(ROWS*A_SLOT)) a_reg (
        .clk(clk), .rst_n(rst_n), .in_valid(in_valid), .in_ready(in_ready), .in_data(in_data), .take(take),
        .full(a_full), .data(a_buf));
    lowbit_in_reg #(.WIDTH(COLS*W_SLOT)) w_reg (
        .clk(clk), .rst_n(rst_n), .in_valid(w_valid), .in_ready(w_ready), .in_data(w_data), .take(take),
        .full(w_full), .data(w_buf));

    // ---- the array: rows past the fold's valid rows get no values and no flags -----------------------------------
    // first flags every beat of the fold's first slot, last the final beat of its last slot
    wire [V_SLOT-1:0] beat_fields [0:ROWS-1];
    generate
        if (SERIAL) begin : g_beats
            wire [IB-1:0] ja_q, jw_q;
            lowbit_beat_counter #(.MAX_BITS(SB), .SERIAL(PE_KIND == 3 ? 1 : 0)) beats (
                .clk(clk), .rst_n(rst_n), .clear(state != S_STREAM), .step(en && feeding), .a_bits(a_bits_q),
                .w_bits(w_bits_q), .ja(ja_q), .jw(jw_q), .last_beat(last_beat));
            genvar b;
            for (b = 0; b < ROWS; b = b + 1) begin : g_row_beat
                assign beat_fields[b] = {jw_q, ja_q, 1'b1, a_buf[b*SB +: SB]};
            end
        end else begin : g_words
            assign last_beat = 1'b1;
            genvar b;
            for (b = 0; b < ROWS; b = b + 1) begin : g_row_word
                assign beat_fields[b] = a_buf[b*A_SLOT +: A_SLOT];
            end
        end
    endgenerate
    wire [ROWS*(V_SLOT+2)-1:0] a_vec;
    genvar r;
    generate
        for (r = 0; r < ROWS; r = r + 1) begin : g_row
            localparam integer RI = r;
            wire live  = feeding && (RI[R_BITS-1:0] < rows_f);
            wire first = live && elem_first;
            wire last  = live && elem_last && last_beat;
            assign a_vec[r*(V_SLOT+2) +: V_SLOT+2] = {last, first, live ? beat_fields[r] : {V_SLOT{1'b0}}};
        end
    endgenerate

    lowbit_systolic_os #(
        .PE_KIND(PE_KIND), .ROWS(ROWS), .COLS(COLS), .W_BITS(W_BITS), .A_BITS(A_BITS),
        .W_SIGNED(W_SIGNED), .A_SIGNED(A_SIGNED), .ACC_BITS(ACC_BITS)
    ) array (
        .clk(clk), .rst_n(rst_n), .en(en),
        .w_mode(w_mode_q), .a_mode(a_mode_q), .w_signed(w_signed_q), .a_signed(a_signed_q),
        .w_width(w_bits_q), .a_width(a_bits_q),
        .w_top(feeding ? w_buf : {COLS*W_SLOT{1'b0}}), .a_left(a_vec), .y_bottom(y_row), .y_valid(y_valid));

    // ---- results: the output side follows the folds in the same order -----------------------------------------
    wire oc_end     = (oc == nf_q - 1'b1);
    wire os_end     = (os == mf_q - 1'b1);
    wire [R_BITS-1:0] rows_o = os_end ? m_last_q : ROWS_R;
    wire o_fold_end = (orow == rows_o - 1'b1);
    wire ob_end     = (obi == nb_q);
    wire o_final    = o_fold_end && oc_end && os_end && ob_end;
    wire push       = en && y_valid;

    lowbit_out_fifo #(.WIDTH(OUT_BITS + FOLD_BITS + BB + R_BITS + 2), .DEPTH(OUT_DEPTH)) out_fifo (
        .clk(clk), .rst_n(rst_n), .push(push), .push_data({orow, obi, ob_end, oc, o_final, y_row}),
        .out_ready(out_ready),
        .out_valid(out_valid), .out_data({out_row, out_block, out_block_last, out_fold, out_last, out_data}),
        .full(fifo_full));

    // ---- control ------------------------------------------------------------------------------------------------
    always @(posedge clk) begin
        if (!rst_n) begin
            state      <= S_IDLE;
            t          <= {TW{1'b0}};
            c_outer    <= 1'b1;
            ov_q       <= 1'b0;
            kp_tab_q   <= {(MAX_BLOCKS*FOLD_BITS){1'b0}};
            nb_q       <= {BB{1'b0}};
            bi         <= {BB{1'b0}};
            obi        <= {BB{1'b0}};
            nf_q       <= {FOLD_BITS{1'b0}};
            mf_q       <= {FOLD_BITS{1'b0}};
            m_last_q   <= {R_BITS{1'b0}};
            w_mode_q   <= 2'd0;
            a_mode_q   <= 2'd0;
            w_signed_q <= 1'b0;
            a_signed_q <= 1'b0;
            w_bits_q   <= {NB{1'b0}};
            a_bits_q   <= {NB{1'b0}};
            s_q        <= {(2*NB){1'b0}};
            elem       <= {FOLD_BITS{1'b0}};
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
                ov_q       <= cfg_overlap;
                kp_tab_q   <= cfg_k_slots;
                nb_q       <= cfg_blocks_m1;
                bi         <= {BB{1'b0}};
                obi        <= {BB{1'b0}};
                nf_q       <= cfg_col_folds;
                mf_q       <= cfg_m_folds;
                m_last_q   <= cfg_m_last;
                w_mode_q   <= cfg_w_mode;
                a_mode_q   <= cfg_a_mode;
                w_signed_q <= cfg_w_signed;
                a_signed_q <= cfg_a_signed;
                w_bits_q   <= cfg_w_bits;
                a_bits_q   <= cfg_a_bits;
                s_q        <= cfg_s;
                elem       <= {FOLD_BITS{1'b0}};
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
                if (feeding && last_beat) elem <= elem + 1'b1;
                if (t == t_last) begin
                    t    <= {TW{1'b0}};
                    elem <= {FOLD_BITS{1'b0}};
                    if (has_next && !b_end) begin        // the next fold: the next block of the same outputs
                        bi <= bi + 1'b1;
                    end else if (has_next) begin         // the next outputs: the inner loop steps, the outer on its wrap
                        bi <= {BB{1'b0}};
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
                end else if (!ob_end) begin              // the same outputs' next block
                    orow <= {R_BITS{1'b0}};
                    obi  <= obi + 1'b1;
                end else begin
                    orow <= {R_BITS{1'b0}};
                    obi  <= {BB{1'b0}};
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
        if (PE_KIND < 0 || PE_KIND > 3) begin : g_param_error_0
`ifdef VERILATOR
            $error("lowbit_gemm_os_top: parameter PE_KIND = %0d must be 0 (fixed), 1 (Bit Fusion), 2 (Stripes) or 3 (Loom)",
                   PE_KIND);
`else
            lowbit_param_error__PE_KIND_must_be_0_to_3 stop ();
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
        if (MAX_BLOCKS < 1) begin : g_param_error_6
`ifdef VERILATOR
            $error("lowbit_gemm_os_top: parameter MAX_BLOCKS = %0d must be >= 1", MAX_BLOCKS);
`else
            lowbit_param_error__MAX_BLOCKS_must_be_at_least_1 stop ();
`endif
        end
    endgenerate
endmodule
`default_nettype wire
