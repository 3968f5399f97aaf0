// lowbit_gemm_top: a tiled GEMM Y[M,N] = A[M,K] x B[K,N] on a weight-stationary lowbit_systolic_ws array
// (Verilog-2005). docs/rtl.md, section "Array and top level", is the full specification; in short:
//
// Loop nest (sim's ws mapping, sim.mapping): the array's rows hold Kp = ceil(K/pack) reduction slots, its columns
// hold N. A fold is one (column fold c, row fold r, stream tile s): NF = ceil(N/C) column folds, KF = ceil(Kp/R)
// row folds, and the M stream elements cut into tiles of TH x TW elements (tile (i, j), j inner; the last tile of
// each axis is TH_LAST / TW_LAST long; a GEMM has TW = TW_LAST = 1). cfg_order (0..5) is the loop order, outer to
// inner, in sim.mapping.ORDERS: (c,r,s) (c,s,r) (r,c,s) (r,s,c) (s,c,r) (s,r,c); 0 is SCALE-Sim's.
//
// Streams (valid/ready; each input has a one-beat register, so a ready never depends on a valid):
//   weights (w_*): per fold R beats, the fold's weight tile, row R-1 first (bits [c*W_SLOT +: W_SLOT] = PE(r, c)'s
//     slot), folds in execution order;
//   activations (in_*): per fold one beat per element of its tile, in the order the host chooses (the same order
//     for every fold of that tile); bits [r*A_SLOT +: A_SLOT] = row r's slot;
//   outputs (out_*): after a fold that ends a reduction block (below; without blocks: of the last row fold), one
//     beat per element of its tile, in input order: the C raw accumulators (bits [c*ACC_BITS +: ACC_BITS]; columns
//     past N carry the zero-padded columns), out_fold = its column fold, out_block = its block, out_block_last = the
//     block is the reduction's last, out_row = its partial-sum row; out_last marks the GEMM's final beat.
//
// Partial sums: a buffer of PSUM_ROWS rows x C accumulators. The loops inside r visit the same elements in the same
// order in every row fold, so row fold r > 0 adds to the row row fold 0 wrote at the same position of that
// sequence (out_row); the last row fold sends buffer + array row to the output instead. The host must keep the
// loops inside r within PSUM_ROWS elements (tile; x NF if c is inside r; all M if s is inside r).
//
// Reduction blocks (MAX_BLOCKS > 1; PTQ-SL's input blocks, each with its own scale): the row folds split into
// consecutive blocks; block b ends at row fold cfg_block_last[b] (the last block at KF - 1; entries past it are
// not read). A block's first row fold starts its sums afresh and its last sends them out, so the output carries
// one beat per element, column fold and block, each the block's own sum: the host (lowbit_layer_top) rescales and
// adds them. The blocks stay inside the reduction loop: the folds, their order and their timing are the same as
// without blocks.
//
// Timing (steps are cycles with en = 1; cycle_count counts them, so valid gaps and backpressure do not change it;
// sim's compute_cycles, the index of the last busy cycle, is cycle_count - 1). An element takes S steps: 1, a_bits
// (Stripes) or a_bits * w_bits (Loom); a fold of T elements streams S*T steps.
// The timing profile is run-time configuration (cfg_overlap); OVERLAP = 1 builds the double-buffered weight registers
// that the overlapped profile needs (an OVERLAP = 0 build refuses cfg_overlap = 1), and runs both profiles.
//   serial preload: per fold R load steps, then S*T + R + C - 2 stream steps (the last result row
//     leaves PE(R-1, C-1)): sum over folds of 2R + C - 2 + S*T (SCALE-Sim's per-fold cycles).
//   overlapped preload: R load steps for the first fold; each fold then takes max(S*T, R) steps while
//     the next fold's tile loads, and the last one S*T + R + C - 2:  R + sum_{f<last} max(S*T_f, R) + S*T_last
//     + R + C - 2, sim's weight_preload: overlapped.
// The last result row leaves during the next fold's first step, or during one extra, uncounted drain step.
// Stalls: the array advances only in a cycle where every input it needs this step is in its register and the
// result row reaching the output can be pushed into the output FIFO.
`default_nettype none
module lowbit_gemm_top #(
    parameter PE_KIND   = 0,    // 0 fixed, 1 Bit-Fusion, 2 Stripes, 3 Loom, 4 Stripes on stationary bits (is)
    parameter ROWS      = 4,    // R
    parameter COLS      = 4,    // C
    parameter W_BITS    = 8,    // PE_KIND 0; for 2 and 3 the widest runtime width is max(W_BITS, A_BITS)
    parameter A_BITS    = 8,    // PE_KIND 0 (and 2, 3 as above)
    parameter W_SIGNED  = 1,    // PE_KIND 0 only
    parameter A_SIGNED  = 1,    // PE_KIND 0 only
    parameter ACC_BITS  = 32,
    parameter OVERLAP   = 0,    // 1: double-buffered weight registers (both profiles run); 0: serial preload only
    parameter PSUM_ROWS = 256,  // partial-sum buffer rows (the largest tile), >= 2
    parameter FOLD_BITS = 16,   // width of the fold- and tile-count config inputs
    parameter CNT_BITS  = 32,   // width of cycle_count
    parameter OUT_DEPTH = 2,    // output FIFO entries (power of two, >= 2)
    parameter MAX_BLOCKS = 1    // most reduction blocks (cfg_block_last entries), >= 1
) (
    clk, rst_n, start, cfg_order, cfg_row_folds, cfg_col_folds, cfg_tile_h, cfg_tiles_h, cfg_tile_h_last,
    cfg_tile_w, cfg_tiles_w, cfg_tile_w_last, cfg_overlap, cfg_w_mode, cfg_a_mode, cfg_w_signed, cfg_a_signed, cfg_w_bits,
    cfg_a_bits, cfg_block_last, busy, w_valid, w_ready, w_data, in_valid, in_ready, in_data, out_valid, out_ready,
    out_data, out_last, out_fold, out_block, out_block_last, out_row, cycle_count
);
    // Derived from the parameters above (localparams: they cannot be overridden).
    localparam SERIAL = (PE_KIND >= 2);                          // bit-serial PEs: an element takes S beats
    /* verilator lint_off UNUSEDPARAM */  // read by the bit-serial PEs only
    localparam S_CODE = (PE_KIND == 3) ? 1 : (PE_KIND == 4) ? 2 : 0;  // lowbit_serial_pe's SERIAL
    /* verilator lint_on UNUSEDPARAM */
    localparam SB     = (W_BITS > A_BITS) ? W_BITS : A_BITS;    // bit-serial: the widest runtime width
    localparam NB     = $clog2(SB + 1);                         // a runtime width, 1..SB
    localparam IB     = (SB > 1) ? $clog2(SB) : 1;              // a bit index, 0..SB-1
    localparam S_MAX  = (PE_KIND == 3) ? SB * SB : SERIAL ? SB : 1;  // most beats per element
    localparam W_SLOT = (PE_KIND == 1) ? 32 : SERIAL ? SB : W_BITS;
    localparam A_SLOT = (PE_KIND == 1) ? 32 : SERIAL ? SB : A_BITS;  // on the input stream (the array adds beats)
    localparam L_BITS = $clog2(PSUM_ROWS) + 1;                  // a tile length, 1..PSUM_ROWS (and above: refused)
    localparam PA     = (PSUM_ROWS > 1) ? $clog2(PSUM_ROWS) : 1; // a partial-sum buffer row
    localparam BB     = (MAX_BLOCKS > 1) ? $clog2(MAX_BLOCKS) : 1;  // a block index
    localparam integer B_TOP_I = MAX_BLOCKS - 1;
    localparam [BB-1:0] B_TOP  = B_TOP_I[BB-1:0];                // the last possible block

    input  wire                     clk;
    input  wire                     rst_n;           // synchronous, active low
    // run-time configuration: sampled on start (ignored unless idle and valid, see cfg_ok)
    input  wire                     start;
    input  wire [2:0]               cfg_order;       // loop order, 0..5 (sim.mapping.ORDERS)
    input  wire [FOLD_BITS-1:0]     cfg_row_folds;   // KF = ceil(Kp / ROWS)
    input  wire [FOLD_BITS-1:0]     cfg_col_folds;   // NF = ceil(N / COLS)
    input  wire [L_BITS-1:0]        cfg_tile_h;      // TH: tile rows (the outer tile axis), full tiles
    input  wire [FOLD_BITS-1:0]     cfg_tiles_h;     // tiles along the outer axis
    input  wire [L_BITS-1:0]        cfg_tile_h_last; // rows of the last tile along it, 1..TH
    input  wire [L_BITS-1:0]        cfg_tile_w;      // TW: tile columns (inner axis); TH * TW <= PSUM_ROWS
    input  wire [FOLD_BITS-1:0]     cfg_tiles_w;
    input  wire [L_BITS-1:0]        cfg_tile_w_last;
    input  wire                     cfg_overlap;     // overlapped preload (needs OVERLAP = 1); 0: serial preload
    input  wire [1:0]               cfg_w_mode;      // PE_KIND 1: weight width 0/1/2 = 2/4/8 bits
    input  wire [1:0]               cfg_a_mode;      // PE_KIND 1: activation width 0/1/2 = 2/4/8 bits
    input  wire                     cfg_w_signed;    // PE_KIND 1-4: weights two's complement
    input  wire                     cfg_a_signed;    // PE_KIND 1-4: activations two's complement
    input  wire [NB-1:0]            cfg_w_bits;      // PE_KIND 2-4: weight width, 1..SB
    input  wire [NB-1:0]            cfg_a_bits;      // PE_KIND 2-4: activation width, 1..SB
    /* verilator lint_off UNUSEDSIGNAL */            // MAX_BLOCKS = 1 reads no entry
    input  wire [MAX_BLOCKS*FOLD_BITS-1:0] cfg_block_last;  // entry b: block b's last row fold
    /* verilator lint_on UNUSEDSIGNAL */
    output wire                     busy;            // a GEMM is in progress (start .. last result row taken)
    // weight stream
    input  wire                     w_valid;
    output wire                     w_ready;
    input  wire [COLS*W_SLOT-1:0]   w_data;
    // activation stream
    input  wire                     in_valid;
    output wire                     in_ready;
    input  wire [ROWS*A_SLOT-1:0]   in_data;
    // output stream: one row of C accumulators per beat
    output wire                     out_valid;
    input  wire                     out_ready;
    output wire [COLS*ACC_BITS-1:0] out_data;
    output wire                     out_last;
    output wire [FOLD_BITS-1:0]     out_fold;        // the beat's column fold
    output wire [BB-1:0]            out_block;       // its reduction block (0 without blocks)
    output wire                     out_block_last;  // that block is the last (always, without blocks)
    output wire [PA-1:0]            out_row;         // its partial-sum row (the position inside the r loop)
    // busy-cycle counter (cleared on start; holds its value when the GEMM is done)
    output wire [CNT_BITS-1:0]      cycle_count;

    localparam S_IDLE = 2'd0, S_LOAD = 2'd1, S_STREAM = 2'd2, S_DRAIN = 2'd3;
    localparam T_NEED   = $clog2(PSUM_ROWS * S_MAX + ROWS + COLS);  // step within a phase: 0 .. S*T + R + C - 3
    localparam T_BITS   = (T_NEED > L_BITS) ? T_NEED : L_BITS;
    localparam TW       = T_BITS + 1;                                  // width of the step arithmetic
    localparam PIPE     = ROWS + COLS - 1;                             // steps from a_left to y_bottom
    localparam TOK_BITS = PA + FOLD_BITS + BB + 5;     // {row, fold, block, block_last, final, last, first, valid}
    localparam OUT_BITS = COLS * ACC_BITS;
    localparam integer R_I = ROWS, RC_I = ROWS + COLS - 3, PSUM_I = PSUM_ROWS;
    localparam [TW-1:0]       T_R     = R_I[TW-1:0];
    localparam [TW-1:0]       T_RC    = RC_I[TW-1:0];   // two's complement: x + T_RC = x - 1 for a 1 x 1 array
    localparam [2*L_BITS-1:0] P_LIMIT = PSUM_I[2*L_BITS-1:0];

    // ---- configuration registers and control state --------------------------------------------------------------
    reg [1:0]           state;
    reg [T_BITS-1:0]    t;                        // step within the current phase
    reg [2:0]           order_q;
    reg                 ov_q;                     // this GEMM runs the overlapped profile
    reg [FOLD_BITS-1:0] kf_q, nf_q, nh_q, nw_q;   // loop extents (row folds, column folds, tiles per axis)
    reg [L_BITS-1:0]    th_q, thl_q, tw_q, twl_q;  // tile lengths
    reg [2*NB-1:0]      s_q;                      // steps per element
    reg [FOLD_BITS-1:0] ci, ri, hi, wi;           // current column fold, row fold, tile (hi, wi)
    reg [BB-1:0]        bi;                       // the block of row fold ri
    reg                 b_first;                  // ri is its block's first row fold
    reg [MAX_BLOCKS*FOLD_BITS-1:0] blk_q;         // cfg_block_last
    reg [PA-1:0]        ptr;                      // partial-sum row of the next element
    reg [L_BITS-1:0]    elem;                     // elements of the current fold fed so far
    reg [1:0]           w_mode_q, a_mode_q;
    reg                 w_signed_q, a_signed_q;
    reg [NB-1:0]        w_bits_q, a_bits_q;
    reg [CNT_BITS-1:0]  cnt;

    wire [2*L_BITS-1:0] cfg_tile = cfg_tile_h * cfg_tile_w;
    wire cfg_ok = (cfg_order <= 3'd5)
                  && (cfg_row_folds != {FOLD_BITS{1'b0}}) && (cfg_col_folds != {FOLD_BITS{1'b0}})
                  && (cfg_tiles_h != {FOLD_BITS{1'b0}}) && (cfg_tiles_w != {FOLD_BITS{1'b0}})
                  && (cfg_tile_h_last != {L_BITS{1'b0}}) && (cfg_tile_h_last <= cfg_tile_h)
                  && (cfg_tile_w_last != {L_BITS{1'b0}}) && (cfg_tile_w_last <= cfg_tile_w)
                  && (cfg_tile <= P_LIMIT) && (!cfg_overlap || OVERLAP != 0)
                  && (!SERIAL || (cfg_w_bits != {NB{1'b0}} && cfg_a_bits != {NB{1'b0}}
                                  && cfg_w_bits <= SB[NB-1:0] && cfg_a_bits <= SB[NB-1:0]));
    // steps per element: 1, a_bits (Stripes) or a_bits * w_bits (Loom)
    wire [2*NB-1:0] cfg_s = (PE_KIND == 3) ? cfg_a_bits * cfg_w_bits
                          : (PE_KIND == 4) ? {{NB{1'b0}}, cfg_w_bits}
                          : SERIAL ? {{NB{1'b0}}, cfg_a_bits} : {{(2*NB-1){1'b0}}, 1'b1};

    // ---- the loop nest --------------------------------------------------------------------------------------------
    wire c_end = (ci == nf_q - 1'b1);
    wire r_end = (ri == kf_q - 1'b1);
    wire h_end = (hi == nh_q - 1'b1);
    wire w_end = (wi == nw_q - 1'b1);
    wire s_end = h_end && w_end;
    wire has_next = !(c_end && r_end && s_end);
    // ri ends its block: the reduction's last row fold, or the table's entry (the last possible block has none)
    wire [FOLD_BITS-1:0] blk_last = blk_q[bi*FOLD_BITS +: FOLD_BITS];
    wire b_end = r_end || (MAX_BLOCKS > 1 && bi != B_TOP && ri == blk_last);
    // nesting level of each loop (0 outer, 1 middle, 2 inner) for the order
    reg [1:0] lv_c, lv_r, lv_s;
    always @(*) begin
        case (order_q)
            3'd0:    begin lv_c = 2'd0; lv_r = 2'd1; lv_s = 2'd2; end  // (c, r, s)
            3'd1:    begin lv_c = 2'd0; lv_s = 2'd1; lv_r = 2'd2; end  // (c, s, r)
            3'd2:    begin lv_r = 2'd0; lv_c = 2'd1; lv_s = 2'd2; end  // (r, c, s)
            3'd3:    begin lv_r = 2'd0; lv_s = 2'd1; lv_c = 2'd2; end  // (r, s, c)
            3'd4:    begin lv_s = 2'd0; lv_c = 2'd1; lv_r = 2'd2; end  // (s, c, r)
            default: begin lv_s = 2'd0; lv_r = 2'd1; lv_c = 2'd2; end  // (s, r, c)
        endcase
    end
    // a loop steps when every loop inside it is at its end (an odometer)
    wire step_c = (lv_r <= lv_c || r_end) && (lv_s <= lv_c || s_end);
    wire step_r = (lv_c <= lv_r || c_end) && (lv_s <= lv_r || s_end);
    wire step_s = (lv_c <= lv_s || c_end) && (lv_r <= lv_s || r_end);

    // the current tile: its length and its steps S*T
    wire [L_BITS-1:0]   len_h   = h_end ? thl_q : th_q;
    wire [L_BITS-1:0]   len_w   = w_end ? twl_q : tw_q;
    /* verilator lint_off UNUSEDSIGNAL */
    wire [2*L_BITS-1:0] len_hw  = len_h * len_w;
    /* verilator lint_on UNUSEDSIGNAL */
    wire [L_BITS-1:0]   len     = len_hw[L_BITS-1:0];  // <= PSUM_ROWS (cfg_ok)
    /* verilator lint_off WIDTHTRUNC */  // S * T <= PSUM_ROWS * S_MAX fits TW bits
    wire [TW-1:0]       st      = {{(TW-L_BITS){1'b0}}, len} * s_q;
    /* verilator lint_on WIDTHTRUNC */
    wire [TW-1:0]       t_ext   = {1'b0, t};
    wire [TW-1:0]       tail    = st + T_RC;                       // S*T + R + C - 3: a fold's last stream step
    wire [TW-1:0]       slot    = (st > T_R) ? st - 1'b1 : T_R - 1'b1;  // max(S*T, R) - 1
    wire [TW-1:0]       t_last  = (ov_q && has_next) ? slot : tail;
    wire                last_beat;                                 // of an element (always, unless SERIAL)

    // ---- steps ----------------------------------------------------------------------------------------------------
    wire in_fold  = (state == S_LOAD) || (state == S_STREAM);
    wire feeding  = (state == S_STREAM) && (t_ext < st);
    wire loading  = (state == S_LOAD) || (ov_q && (state == S_STREAM) && has_next && (t_ext < T_R));
    wire load_end = loading && (t_ext == T_R - 1'b1);              // the tile's last beat
    wire swap     = (OVERLAP != 0) && ((state == S_LOAD) ? load_end
                                       : (ov_q && (state == S_STREAM) && has_next && t_ext == slot));

    // one-beat input registers (lowbit_in_reg)
    wire                  a_full, w_full;
    wire [ROWS*A_SLOT-1:0] a_buf;
    wire [COLS*W_SLOT-1:0] w_buf;

    // result tokens travel alongside the data, PIPE steps from a_left to y_bottom
    reg  [TOK_BITS-1:0] tok [0:PIPE-1];  // tok[0] is the newest
    wire [TOK_BITS-1:0] tok_end   = tok[PIPE-1];
    wire                tok_valid = tok_end[0];
    wire                tok_first = tok_end[1];   // a block's first row fold: overwrite the partial-sum row
    wire                tok_last  = tok_end[2];   // a block's last row fold: send the row to the output
    wire                tok_final = tok_end[3];   // the GEMM's final output row
    wire                tok_blast = tok_end[4];   // the reduction's last block
    wire [BB-1:0]       tok_block = tok_end[5 +: BB];
    wire [FOLD_BITS-1:0] tok_fold = tok_end[5 + BB +: FOLD_BITS];
    wire [PA-1:0]       tok_row   = tok_end[5 + BB + FOLD_BITS +: PA];

    // output FIFO (lowbit_out_fifo): {fold, last, data}
    wire fifo_full;

    wire need_a   = feeding;    // an element's vector stays in a_buf until its last beat
    wire need_w   = loading;
    wire out_hold = tok_valid && tok_last && fifo_full;  // the result row cannot be pushed this step
    wire step_ok  = (state != S_IDLE) && !out_hold;
    wire en       = step_ok && (!need_a || a_full) && (!need_w || w_full);
    wire take_a   = en && need_a && last_beat;
    wire take_w   = en && need_w;

    assign busy        = (state != S_IDLE);
    assign cycle_count = cnt;

    lowbit_in_reg #(.WIDTH(ROWS*A_SLOT)) a_reg (
        .clk(clk), .rst_n(rst_n), .in_valid(in_valid), .in_ready(in_ready), .in_data(in_data), .take(take_a),
        .full(a_full), .data(a_buf));
    lowbit_in_reg #(.WIDTH(COLS*W_SLOT)) w_reg (
        .clk(clk), .rst_n(rst_n), .in_valid(w_valid), .in_ready(w_ready), .in_data(w_data), .take(take_w),
        .full(w_full), .data(w_buf));

    // ---- the array --------------------------------------------------------------------------------------------
    wire [OUT_BITS-1:0] y_row;
    localparam ARR_A_SLOT = SERIAL ? SB + 1 + 2 * IB : A_SLOT;   // the array's activation slot
    wire [ROWS*ARR_A_SLOT-1:0] a_vec;
    generate
        if (SERIAL) begin : g_beats
            // the element's vector stays in a_buf for all its beats; each row's slot carries the beat {jw, ja, valid}
            // with the value (lowbit_systolic_ws, lowbit_serial_pe)
            wire [IB-1:0] ja_q, jw_q;
            lowbit_beat_counter #(.MAX_BITS(SB), .SERIAL(S_CODE)) beats (
                .clk(clk), .rst_n(rst_n), .clear(state != S_STREAM), .step(en && feeding), .a_bits(a_bits_q),
                .w_bits(w_bits_q), .ja(ja_q), .jw(jw_q), .last_beat(last_beat));
            genvar r;
            for (r = 0; r < ROWS; r = r + 1) begin : g_row
                assign a_vec[r*ARR_A_SLOT +: ARR_A_SLOT] = feeding ? {jw_q, ja_q, 1'b1, a_buf[r*SB +: SB]}
                                                                   : {ARR_A_SLOT{1'b0}};
            end
        end else begin : g_vectors
            assign last_beat  = 1'b1;
            assign a_vec      = feeding ? a_buf : {ROWS*A_SLOT{1'b0}};
        end
    endgenerate

    lowbit_systolic_ws #(
        .PE_KIND(PE_KIND), .ROWS(ROWS), .COLS(COLS), .W_BITS(W_BITS), .A_BITS(A_BITS),
        .W_SIGNED(W_SIGNED), .A_SIGNED(A_SIGNED), .ACC_BITS(ACC_BITS), .OVERLAP(OVERLAP)
    ) array (
        .clk(clk), .rst_n(rst_n), .en(en), .load_w(state == S_LOAD), .w_cap(load_end), .w_swap(swap),
        .w_mode(w_mode_q), .a_mode(a_mode_q), .w_signed(w_signed_q), .a_signed(a_signed_q),
        .w_width(w_bits_q), .a_width(a_bits_q),
        .w_top(w_buf), .a_left(a_vec), .y_bottom(y_row));

    // ---- partial-sum buffer: row p holds C accumulators ----------------------------------------------------------
    reg  [OUT_BITS-1:0] psum_mem [0:PSUM_ROWS-1];
    wire [OUT_BITS-1:0] psum_old = psum_mem[tok_row];
    wire [OUT_BITS-1:0] psum_new;  // buffer row + array row, per column, modulo 2^ACC_BITS
    genvar c;
    generate
        for (c = 0; c < COLS; c = c + 1) begin : g_acc
            assign psum_new[c*ACC_BITS +: ACC_BITS] = tok_first ? y_row[c*ACC_BITS +: ACC_BITS]
                : psum_old[c*ACC_BITS +: ACC_BITS] + y_row[c*ACC_BITS +: ACC_BITS];
        end
    endgenerate

    wire push = en && tok_valid && tok_last;

    always @(posedge clk) begin
        if (en && tok_valid && !tok_last) psum_mem[tok_row] <= psum_new;
    end

    // ---- output FIFO ----------------------------------------------------------------------------------------------
    lowbit_out_fifo #(.WIDTH(OUT_BITS + FOLD_BITS + BB + PA + 2), .DEPTH(OUT_DEPTH)) out_fifo (
        .clk(clk), .rst_n(rst_n), .push(push),
        .push_data({tok_row, tok_block, tok_blast, tok_fold, tok_final, psum_new}), .out_ready(out_ready),
        .out_valid(out_valid), .out_data({out_row, out_block, out_block_last, out_fold, out_last, out_data}),
        .full(fifo_full));

    // ---- token pipeline (advances with the array) ------------------------------------------------------------
    // A token enters with an element's last beat on a_left and reaches tok_end exactly when that element's
    // de-skewed result row is on y_bottom.
    wire                inj_final = !has_next && (elem == len - 1'b1);
    wire [TOK_BITS-1:0] tok_in    = (feeding && last_beat) ? {ptr, ci, bi, r_end, inj_final, b_end, b_first, 1'b1}
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
            state      <= S_IDLE;
            t          <= {T_BITS{1'b0}};
            order_q    <= 3'd0;
            ov_q       <= 1'b0;
            kf_q       <= {FOLD_BITS{1'b0}};
            nf_q       <= {FOLD_BITS{1'b0}};
            nh_q       <= {FOLD_BITS{1'b0}};
            nw_q       <= {FOLD_BITS{1'b0}};
            th_q       <= {L_BITS{1'b0}};
            thl_q      <= {L_BITS{1'b0}};
            tw_q       <= {L_BITS{1'b0}};
            twl_q      <= {L_BITS{1'b0}};
            s_q        <= {(2*NB){1'b0}};
            ci         <= {FOLD_BITS{1'b0}};
            ri         <= {FOLD_BITS{1'b0}};
            hi         <= {FOLD_BITS{1'b0}};
            wi         <= {FOLD_BITS{1'b0}};
            bi         <= {BB{1'b0}};
            b_first    <= 1'b1;
            blk_q      <= {(MAX_BLOCKS*FOLD_BITS){1'b0}};
            ptr        <= {PA{1'b0}};
            elem       <= {L_BITS{1'b0}};
            w_mode_q   <= 2'd0;
            a_mode_q   <= 2'd0;
            w_signed_q <= 1'b0;
            a_signed_q <= 1'b0;
            w_bits_q   <= {NB{1'b0}};
            a_bits_q   <= {NB{1'b0}};
            cnt        <= {CNT_BITS{1'b0}};
        end else if (state == S_IDLE) begin
            if (start && cfg_ok) begin
                state      <= S_LOAD;
                t          <= {T_BITS{1'b0}};
                order_q    <= cfg_order;
                ov_q       <= cfg_overlap;
                kf_q       <= cfg_row_folds;
                nf_q       <= cfg_col_folds;
                nh_q       <= cfg_tiles_h;
                nw_q       <= cfg_tiles_w;
                th_q       <= cfg_tile_h;
                thl_q      <= cfg_tile_h_last;
                tw_q       <= cfg_tile_w;
                twl_q      <= cfg_tile_w_last;
                s_q        <= cfg_s;
                ci         <= {FOLD_BITS{1'b0}};
                ri         <= {FOLD_BITS{1'b0}};
                hi         <= {FOLD_BITS{1'b0}};
                wi         <= {FOLD_BITS{1'b0}};
                bi         <= {BB{1'b0}};
                b_first    <= 1'b1;
                blk_q      <= cfg_block_last;
                ptr        <= {PA{1'b0}};
                elem       <= {L_BITS{1'b0}};
                w_mode_q   <= cfg_w_mode;
                a_mode_q   <= cfg_a_mode;
                w_signed_q <= cfg_w_signed;
                a_signed_q <= cfg_a_signed;
                w_bits_q   <= cfg_w_bits;
                a_bits_q   <= cfg_a_bits;
                cnt        <= {CNT_BITS{1'b0}};
            end
        end else if (en) begin
            if (in_fold) cnt <= cnt + 1'b1;
            if (feeding && last_beat) begin
                ptr  <= ptr + 1'b1;
                elem <= elem + 1'b1;
            end
            case (state)
                S_LOAD: begin
                    if (t_ext == T_R - 1'b1) begin
                        state <= S_STREAM;
                        t     <= {T_BITS{1'b0}};
                    end else begin
                        t <= t + 1'b1;
                    end
                end
                S_STREAM: begin
                    if (t_ext == t_last) begin
                        t <= {T_BITS{1'b0}};
                        if (has_next) begin                    // the next fold, in loop order
                            state <= ov_q ? S_STREAM : S_LOAD;
                            elem  <= {L_BITS{1'b0}};
                            if (step_r) ptr <= {PA{1'b0}};     // the loops inside r start again
                            if (step_c) ci <= c_end ? {FOLD_BITS{1'b0}} : ci + 1'b1;
                            if (step_r) begin
                                ri      <= r_end ? {FOLD_BITS{1'b0}} : ri + 1'b1;
                                bi      <= r_end ? {BB{1'b0}} : b_end ? bi + 1'b1 : bi;
                                b_first <= b_end;
                            end
                            if (step_s) begin
                                if (!w_end) begin
                                    wi <= wi + 1'b1;
                                end else begin
                                    wi <= {FOLD_BITS{1'b0}};
                                    hi <= h_end ? {FOLD_BITS{1'b0}} : hi + 1'b1;
                                end
                            end
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
        if (PE_KIND < 0 || PE_KIND > 4) begin : g_param_error_0
`ifdef VERILATOR
            $error("lowbit_gemm_top: parameter PE_KIND = %0d must be 0 (fixed), 1 (Bit Fusion), 2 (Stripes), 3 (Loom) or 4 (Stripes, stationary bits)",
                   PE_KIND);
`else
            lowbit_param_error__PE_KIND_must_be_0_to_4 stop ();
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
        if (PSUM_ROWS < 2) begin : g_param_error_3
`ifdef VERILATOR
            $error("lowbit_gemm_top: parameter PSUM_ROWS = %0d must be >= 2", PSUM_ROWS);
`else
            lowbit_param_error__PSUM_ROWS_must_be_at_least_2 stop ();
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
        if (OVERLAP != 0 && OVERLAP != 1) begin : g_param_error_7
`ifdef VERILATOR
            $error("lowbit_gemm_top: parameter OVERLAP = %0d must be 0 (serial preload) or 1 (overlapped)", OVERLAP);
`else
            lowbit_param_error__OVERLAP_must_be_0_or_1 stop ();
`endif
        end
        if (MAX_BLOCKS < 1) begin : g_param_error_8
`ifdef VERILATOR
            $error("lowbit_gemm_top: parameter MAX_BLOCKS = %0d must be >= 1", MAX_BLOCKS);
`else
            lowbit_param_error__MAX_BLOCKS_must_be_at_least_1 stop ();
`endif
        end
    endgenerate
endmodule
`default_nettype wire
