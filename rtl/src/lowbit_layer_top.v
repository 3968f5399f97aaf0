// lowbit_layer_top: one quantized layer (docs/formats.md, "Integer export", 2.2) on lowbit_gemm_top, with the
// zero-point correction and one lowbit_requant per array column (Verilog-2005). docs/rtl.md, section "Real
// layers", is the full specification; in short:
//
// A layer is one GEMM of the gemm top: raw activation codes x [M, K] times signed weight codes w [K, N]. PTQ-SL's
// n_H input blocks (n_H = 1 otherwise) are reduction blocks of that GEMM (MAX_BLOCKS >= n_H): they stay inside its
// reduction loop, and the gemm top sends each block's own raw sum R_h = sum_{k in h} x_k * w_k (ACC_BITS, wrapping)
// as one output beat. Per output (m, n) and block h the beat goes through
//   P_h = R_h - corr_{n,h}                 corr_{n,h} = z_x * sum_{k in h} w_{n,k}, mod 2^ACC_BITS: P_h is exact
//                                          because |P_h| < 2^31 (export bound) even when R_h wraps
//   A   = (h == 0 ? B_n << T_n : A_buf[row]) + M_{n,h} * P_h       (lowbit_requant stage 1, 64 bits)
//   y   = clamp(((A + 2^(S_n-1)) >> S_n) + z_y, lo, hi)            (lowbit_requant stage 2, last block only)
// A block that is not the last writes A to the accumulator buffer A_buf instead of emitting codes, at the beat's
// row (the gemm top's out_row): the partial-sum row for ws (PSUM_ROWS rows, the mapping's partial-sum footprint),
// the row in the fold for os (ROWS rows: the blocks of an output tile run back to back). The next block's beat of
// the same outputs reads it back through the requant unit's external-accumulator input (forwarded from stage 1
// when it follows right behind). The constants of a beat are those of its column fold and block.
//
// Constants (config path). Each column c has a constant memory of MAX_BLOCKS x MAX_NF entries; entry (h, cf) holds
// the constants of output channel n = cf * COLS + c for block h: {shift S, bias_shift T, bias B, mult M, corr}
// (CONST_BITS, corr in the low ACC_BITS bits, see the localparams; S, T and B are read from any block's entry,
// the host writes them alike). One write (cfg_we, cfg_addr = h * MAX_NF + cf, cfg_data = the COLS entries of
// column fold cf, column c at [c*CONST_BITS +: CONST_BITS]) loads a column fold's block. Writes are ignored while
// busy.
//
// Layer configuration is sampled with start (ignored while busy): the gemm top's cfg_* values (with the blocks:
// cfg_block_last for ws, cfg_k_slots / cfg_blocks_m1 for os) and the output zero point and clamp bounds.
//
// Output stream: one beat per gemm output beat of the last block, in the gemm top's order (its mapping), the COLS
// output codes at [c*OUT_BITS +: OUT_BITS]; out_last marks the final beat. Columns past N carry the codes of
// whatever constants their entries hold (the host writes zeros: clamp(z_y, lo, hi)).
//
// Timing. The correction and the requant units form a 2-stage pipeline behind the gemm top's output FIFO; it
// advances when the output register is empty or taken (global stall), so a beat reaches out_valid 2 cycles after
// it leaves the gemm top. cycle_count is the gemm top's busy-cycle counter: the array's steps, which do not include
// the config writes or this pipeline (documented in docs/rtl.md).
`default_nettype none
module lowbit_layer_top #(
    parameter PE_KIND   = 0,    // 0 fixed (lowbit_mac_pe), 1 Bit-Fusion (lowbit_fusion_pe), 2 Stripes, 3 Loom
    parameter ROWS      = 4,    // R
    parameter COLS      = 4,    // C
    parameter W_BITS    = 8,    // PE_KIND 0; for 2 and 3 the widest runtime width is max(W_BITS, A_BITS)
    parameter A_BITS    = 8,    // PE_KIND 0 (and 2, 3 as above)
    parameter W_SIGNED  = 1,    // PE_KIND 0 only
    parameter A_SIGNED  = 1,    // PE_KIND 0 only
    parameter ACC_BITS  = 32,   // array accumulators = the requant unit's partial sum P_h
    parameter MAX_NF    = 4,    // largest number of column folds, N <= MAX_NF * COLS (power of two, >= 2)
    parameter MAX_BLOCKS = 1,   // most reduction blocks n_H (power of two, >= 1)
    parameter PSUM_ROWS = 256,  // the gemm top's partial-sum buffer rows (the largest stream tile)
    parameter OVERLAP   = 0,    // ws: 1 builds the double-buffered weight registers (cfg_overlap may then be 1)
    parameter DATAFLOW  = 0,    // 0 weight-stationary (lowbit_gemm_top), 1 output-stationary (lowbit_gemm_os_top)
    parameter OUT_BITS  = 32,   // output code width (32 serves int8/uint8 codes and the int32 logits alike)
    parameter FOLD_BITS = 16,
    parameter CNT_BITS  = 32
) (
    clk, rst_n, cfg_we, cfg_addr, cfg_data, start, cfg_order, cfg_row_folds, cfg_col_folds, cfg_tile_h, cfg_tiles_h,
    cfg_tile_h_last, cfg_tile_w, cfg_tiles_w, cfg_tile_w_last, cfg_block_last, cfg_k_slots, cfg_blocks_m1, cfg_m_folds,
    cfg_m_last, cfg_overlap, cfg_w_mode, cfg_a_mode, cfg_w_signed, cfg_a_signed, cfg_w_bits, cfg_a_bits,
    cfg_zero_point, cfg_out_min, cfg_out_max, busy, w_valid, w_ready, w_data, in_valid,
    in_ready, in_data, out_valid, out_ready, out_data, out_last, cycle_count
);
    // Derived from the parameters above (localparams: they cannot be overridden).
    localparam SERIAL = (PE_KIND == 2) || (PE_KIND == 3);
    localparam SB     = (W_BITS > A_BITS) ? W_BITS : A_BITS;     // bit-serial: the widest runtime width
    localparam G_NB   = $clog2(SB + 1);                          // lowbit_gemm_top's cfg_w_bits width
    localparam W_SLOT = (PE_KIND == 1) ? 32 : SERIAL ? SB : W_BITS;
    localparam A_SLOT = (PE_KIND == 1) ? 32 : SERIAL ? SB : A_BITS;
    localparam L_BITS = $clog2(PSUM_ROWS) + 1;   // lowbit_gemm_top's tile-length width
    localparam R_BITS = $clog2(ROWS + 1);         // lowbit_gemm_os_top's row-count width
    localparam NF_BITS = $clog2(MAX_NF);
    localparam BB      = (MAX_BLOCKS > 1) ? $clog2(MAX_BLOCKS) : 1;  // a block index
    localparam HB      = $clog2(MAX_BLOCKS);                         // its bits in a constant address (0: none)
    localparam PA      = (PSUM_ROWS > 1) ? $clog2(PSUM_ROWS) : 1;    // the ws gemm top's out_row
    localparam RB      = (ROWS > 1) ? $clog2(ROWS) : 1;              // an os fold's row index
    localparam AB_BITS = (DATAFLOW == 1) ? RB : PA;                  // accumulator buffer address: the beat's row
    // One constant entry, LSB first: {shift, bias_shift, bias, mult, corr}, corr ACC_BITS wide.  These three
    // widths are the layout's only definition: rtl/layer.py reads them from this file.
    localparam CONST_MULT_BITS  = 31;
    localparam CONST_BIAS_BITS  = 32;
    localparam CONST_SHIFT_BITS = 6;
    localparam CONST_BITS = ACC_BITS + CONST_MULT_BITS + CONST_BIAS_BITS + 2 * CONST_SHIFT_BITS;
    localparam C_CORR  = 0;                           // field offsets in an entry
    localparam C_MULT  = C_CORR + ACC_BITS;
    localparam C_BIAS  = C_MULT + CONST_MULT_BITS;
    localparam C_TSH   = C_BIAS + CONST_BIAS_BITS;
    localparam C_SHIFT = C_TSH + CONST_SHIFT_BITS;

    input  wire                       clk;
    input  wire                       rst_n;          // synchronous, active low
    // constant memory: one column fold per write
    input  wire                       cfg_we;
    input  wire [HB+NF_BITS-1:0]      cfg_addr;       // block h * MAX_NF + column fold cf
    input  wire [COLS*CONST_BITS-1:0] cfg_data;
    // pass configuration, sampled on start
    input  wire                       start;
    input  wire [2:0]                 cfg_order;      // the gemm top's loop order and stream tiles (its ports)
    input  wire                       cfg_overlap;    // the gemm top's timing profile: 1 overlapped
    input  wire [FOLD_BITS-1:0]       cfg_col_folds;
    /* verilator lint_off UNUSEDSIGNAL */             // each dataflow's gemm top takes its own configuration
    input  wire [FOLD_BITS-1:0]       cfg_row_folds;  // DATAFLOW 0
    input  wire [L_BITS-1:0]          cfg_tile_h;
    input  wire [FOLD_BITS-1:0]       cfg_tiles_h;
    input  wire [L_BITS-1:0]          cfg_tile_h_last;
    input  wire [L_BITS-1:0]          cfg_tile_w;
    input  wire [FOLD_BITS-1:0]       cfg_tiles_w;
    input  wire [L_BITS-1:0]          cfg_tile_w_last;
    input  wire [MAX_BLOCKS*FOLD_BITS-1:0] cfg_block_last;  // DATAFLOW 0: block b's last row fold
    input  wire [MAX_BLOCKS*FOLD_BITS-1:0] cfg_k_slots;     // DATAFLOW 1: block b's slots
    input  wire [BB-1:0]              cfg_blocks_m1;  // DATAFLOW 1: blocks - 1
    input  wire [FOLD_BITS-1:0]       cfg_m_folds;
    input  wire [R_BITS-1:0]          cfg_m_last;
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire [1:0]                 cfg_w_mode;
    input  wire [1:0]                 cfg_a_mode;
    input  wire                       cfg_w_signed;
    input  wire                       cfg_a_signed;
    input  wire [G_NB-1:0]            cfg_w_bits;     // PE_KIND 2, 3: run-time widths (as lowbit_gemm_top)
    input  wire [G_NB-1:0]            cfg_a_bits;
    input  wire [OUT_BITS:0]          cfg_zero_point; // z_y, signed
    input  wire [OUT_BITS:0]          cfg_out_min;    // lo, signed
    input  wire [OUT_BITS:0]          cfg_out_max;    // hi, signed
    output wire                       busy;
    // weight and activation streams (as lowbit_gemm_top)
    input  wire                       w_valid;
    output wire                       w_ready;
    input  wire [COLS*W_SLOT-1:0]     w_data;
    input  wire                       in_valid;
    output wire                       in_ready;
    input  wire [ROWS*A_SLOT-1:0]     in_data;
    // output stream: COLS codes per beat
    output wire                       out_valid;
    input  wire                       out_ready;
    output wire [COLS*OUT_BITS-1:0]   out_data;
    output wire                       out_last;
    // array busy cycles of the layer (the gemm top's counter)
    output wire [CNT_BITS-1:0]        cycle_count;

    localparam A64      = 64;                            // requant accumulator

    // ---- layer registers -----------------------------------------------------------------------------------------
    reg [OUT_BITS:0]   zp_q, lo_q, hi_q;

    // ---- the GEMM ------------------------------------------------------------------------------------------------
    wire                     g_busy, g_out_valid, g_out_last;
    wire [COLS*ACC_BITS-1:0] g_out_data;
    /* verilator lint_off UNUSEDSIGNAL */                // N <= MAX_NF * COLS: the low NF_BITS suffice
    wire [FOLD_BITS-1:0]     g_out_fold;                // the beat's column fold: its constants
    wire [BB-1:0]            g_out_block;               // its block: its constants, first block
    wire                     g_out_block_last;          // its block is the last: requantize and emit
    wire [AB_BITS-1:0]       g_out_row;                 // its accumulator buffer row
    /* verilator lint_on UNUSEDSIGNAL */
    wire                     adv;                       // the requant pipeline advances this cycle
    wire                     acc_valid0, out_valid0;
    // busy until the last beat has left: the array, the gemm top's output FIFO, stage 1 and the output register
    assign busy = g_busy | g_out_valid | acc_valid0 | out_valid0;
    wire start_ok = start && !busy;

    generate
        if (DATAFLOW == 1) begin : g_os
            /* verilator lint_off UNUSEDSIGNAL */
            wire [R_BITS-1:0] row;                      // 0 .. ROWS - 1: the low AB_BITS suffice
            /* verilator lint_on UNUSEDSIGNAL */
            lowbit_gemm_os_top #(
                .PE_KIND(PE_KIND), .ROWS(ROWS), .COLS(COLS), .W_BITS(W_BITS), .A_BITS(A_BITS), .W_SIGNED(W_SIGNED),
                .A_SIGNED(A_SIGNED), .ACC_BITS(ACC_BITS), .FOLD_BITS(FOLD_BITS), .CNT_BITS(CNT_BITS),
                .MAX_BLOCKS(MAX_BLOCKS)
            ) gemm (
                .clk(clk), .rst_n(rst_n), .start(start_ok), .cfg_order(cfg_order), .cfg_k_slots(cfg_k_slots),
                .cfg_blocks_m1(cfg_blocks_m1),
                .cfg_col_folds(cfg_col_folds), .cfg_m_folds(cfg_m_folds), .cfg_m_last(cfg_m_last),
                .cfg_overlap(cfg_overlap),
                .cfg_w_mode(cfg_w_mode), .cfg_a_mode(cfg_a_mode), .cfg_w_signed(cfg_w_signed),
                .cfg_a_signed(cfg_a_signed), .cfg_w_bits(cfg_w_bits), .cfg_a_bits(cfg_a_bits),
                .busy(g_busy),
                .w_valid(w_valid), .w_ready(w_ready), .w_data(w_data),
                .in_valid(in_valid), .in_ready(in_ready), .in_data(in_data),
                .out_valid(g_out_valid), .out_ready(adv), .out_data(g_out_data), .out_last(g_out_last),
                .out_fold(g_out_fold), .out_block(g_out_block), .out_block_last(g_out_block_last), .out_row(row),
                .cycle_count(cycle_count));
            assign g_out_row = row[AB_BITS-1:0];
        end else begin : g_ws
            lowbit_gemm_top #(
                .PE_KIND(PE_KIND), .ROWS(ROWS), .COLS(COLS), .W_BITS(W_BITS), .A_BITS(A_BITS), .W_SIGNED(W_SIGNED),
                .A_SIGNED(A_SIGNED), .ACC_BITS(ACC_BITS), .OVERLAP(OVERLAP), .PSUM_ROWS(PSUM_ROWS),
                .FOLD_BITS(FOLD_BITS), .CNT_BITS(CNT_BITS), .MAX_BLOCKS(MAX_BLOCKS)
            ) gemm (
                .clk(clk), .rst_n(rst_n), .start(start_ok), .cfg_order(cfg_order), .cfg_row_folds(cfg_row_folds),
                .cfg_col_folds(cfg_col_folds), .cfg_tile_h(cfg_tile_h), .cfg_tiles_h(cfg_tiles_h),
                .cfg_tile_h_last(cfg_tile_h_last), .cfg_tile_w(cfg_tile_w), .cfg_tiles_w(cfg_tiles_w),
                .cfg_tile_w_last(cfg_tile_w_last), .cfg_overlap(cfg_overlap), .cfg_w_mode(cfg_w_mode),
                .cfg_a_mode(cfg_a_mode), .cfg_w_signed(cfg_w_signed), .cfg_a_signed(cfg_a_signed),
                .cfg_w_bits(cfg_w_bits), .cfg_a_bits(cfg_a_bits), .cfg_block_last(cfg_block_last),
                .busy(g_busy),
                .w_valid(w_valid), .w_ready(w_ready), .w_data(w_data),
                .in_valid(in_valid), .in_ready(in_ready), .in_data(in_data),
                .out_valid(g_out_valid), .out_ready(adv), .out_data(g_out_data), .out_last(g_out_last),
                .out_fold(g_out_fold), .out_block(g_out_block), .out_block_last(g_out_block_last),
                .out_row(g_out_row), .cycle_count(cycle_count));
        end
    endgenerate

    // ---- pipeline control ----------------------------------------------------------------------------------------
    assign adv = !out_valid0 || out_ready;   // the output register is empty or taken at this edge
    wire take = g_out_valid && adv;          // a gemm output beat enters stage 1
    wire first_block = (g_out_block == {BB{1'b0}});
    reg  last_s1, last_s2;                   // out_last travelling with the final beat
    reg  [AB_BITS-1:0] ab_addr_q;            // buffer row of the beat in stage 1

    always @(posedge clk) begin
        if (!rst_n) begin
            zp_q      <= {(OUT_BITS + 1){1'b0}};
            lo_q      <= {(OUT_BITS + 1){1'b0}};
            hi_q      <= {(OUT_BITS + 1){1'b0}};
            last_s1   <= 1'b0;
            last_s2   <= 1'b0;
            ab_addr_q <= {AB_BITS{1'b0}};
        end else begin
            if (start_ok) begin
                zp_q <= cfg_zero_point;
                lo_q <= cfg_out_min;
                hi_q <= cfg_out_max;
            end
            if (adv) begin
                last_s1 <= take && g_out_last;
                last_s2 <= last_s1;
            end
            if (take) ab_addr_q <= g_out_row;
        end
    end

    // ---- accumulator buffer for n_H > 1: A of the outputs whose blocks are under way ------------------------------
    wire                acc_last0;                        // the beat in stage 1 is its output's last block
    reg  [COLS*A64-1:0] abuf [0:(1 << AB_BITS)-1];
    wire [COLS*A64-1:0] acc_row;                          // A of the beat in stage 1, all columns
    wire                ab_write = acc_valid0 && !acc_last0;  // (re)written while the beat sits in stage 1
    // a beat right behind one of the same row reads that beat's A (its write lands on the same edge)
    wire [COLS*A64-1:0] ab_rd = (ab_write && ab_addr_q == g_out_row) ? acc_row : abuf[g_out_row];
    always @(posedge clk) begin
        if (ab_write) abuf[ab_addr_q] <= acc_row;
    end

    // ---- per column: constant memory, zero-point correction, requant unit -----------------------------------------
    wire [COLS-1:0] col_acc_valid, col_acc_last, col_out_valid;
    genvar c;
    generate
        for (c = 0; c < COLS; c = c + 1) begin : g_col
            reg  [CONST_BITS-1:0] cmem [0:MAX_BLOCKS*MAX_NF-1];
            always @(posedge clk) begin
                if (cfg_we && !busy) cmem[cfg_addr] <= cfg_data[c*CONST_BITS +: CONST_BITS];
            end
            wire [HB+NF_BITS-1:0] k_addr;                  // h * MAX_NF + cf (both powers of two)
            if (MAX_BLOCKS > 1) begin : g_blocks
                assign k_addr = {g_out_block, g_out_fold[NF_BITS-1:0]};
            end else begin : g_one
                assign k_addr = g_out_fold[NF_BITS-1:0];
            end
            wire [CONST_BITS-1:0] k    = cmem[k_addr];
            wire [ACC_BITS-1:0]   psum = g_out_data[c*ACC_BITS +: ACC_BITS] - k[C_CORR +: ACC_BITS];

            lowbit_requant #(
                .PSUM_BITS(ACC_BITS), .MULT_BITS(CONST_MULT_BITS), .ACC_BITS(A64), .BIAS_BITS(CONST_BIAS_BITS),
                .SHIFT_BITS(CONST_SHIFT_BITS),
                .OUT_BITS(OUT_BITS)
            ) rq (
                .clk(clk), .rst_n(rst_n), .en(adv),
                .in_valid(take), .in_first(first_block), .in_last(g_out_block_last), .in_acc_ext(1'b1),
                .psum(psum), .mult(k[C_MULT +: CONST_MULT_BITS]), .bias(k[C_BIAS +: CONST_BIAS_BITS]),
                .bias_shift(k[C_TSH +: CONST_SHIFT_BITS]),
                .acc_in(ab_rd[c*A64 +: A64]), .shift(k[C_SHIFT +: CONST_SHIFT_BITS]),
                .zero_point(zp_q), .out_min(lo_q), .out_max(hi_q),
                .acc_valid(col_acc_valid[c]), .acc_last(col_acc_last[c]), .acc_out(acc_row[c*A64 +: A64]),
                .out_valid(col_out_valid[c]), .out_code(out_data[c*OUT_BITS +: OUT_BITS]));
        end
    endgenerate

    // every column sees the same beats: column 0's flags stand for all
    assign acc_valid0 = col_acc_valid[0];
    assign acc_last0  = col_acc_last[0];
    assign out_valid0 = col_out_valid[0];
    assign out_valid  = out_valid0;
    assign out_last   = last_s2 & out_valid0;
    wire unused_flags = &{1'b0, col_acc_valid, col_acc_last, col_out_valid};

    // ---- parameter checks, at elaboration: Verilator reports the message ($error in a generate block); other tools
    // stop on the missing module whose name states the rule (tests/rtl/test_params.py drives every check) --------
    generate
        if (PE_KIND < 0 || PE_KIND > 3) begin : g_param_error_0
`ifdef VERILATOR
            $error("lowbit_layer_top: parameter PE_KIND = %0d must be 0 (fixed), 1 (Bit Fusion), 2 (Stripes) or 3 (Loom)",
                   PE_KIND);
`else
            lowbit_param_error__PE_KIND_must_be_0_to_3 stop ();
`endif
        end
        if (ROWS < 1) begin : g_param_error_1
`ifdef VERILATOR
            $error("lowbit_layer_top: parameter ROWS = %0d must be >= 1", ROWS);
`else
            lowbit_param_error__ROWS_must_be_at_least_1 stop ();
`endif
        end
        if (COLS < 1) begin : g_param_error_2
`ifdef VERILATOR
            $error("lowbit_layer_top: parameter COLS = %0d must be >= 1", COLS);
`else
            lowbit_param_error__COLS_must_be_at_least_1 stop ();
`endif
        end
        if (MAX_BLOCKS < 1 || ((MAX_BLOCKS) & ((MAX_BLOCKS) - 1)) != 0) begin : g_param_error_3
`ifdef VERILATOR
            $error("lowbit_layer_top: parameter MAX_BLOCKS = %0d must be a power of two >= 1", MAX_BLOCKS);
`else
            lowbit_param_error__MAX_BLOCKS_must_be_a_power_of_two stop ();
`endif
        end
        if (MAX_NF < 2 || ((MAX_NF) & ((MAX_NF) - 1)) != 0) begin : g_param_error_4
`ifdef VERILATOR
            $error("lowbit_layer_top: parameter MAX_NF = %0d must be a power of two >= 2", MAX_NF);
`else
            lowbit_param_error__MAX_NF_must_be_a_power_of_two_at_least_2 stop ();
`endif
        end
        if (ACC_BITS > A64 - CONST_MULT_BITS - 1) begin : g_param_error_5
`ifdef VERILATOR
            $error("lowbit_layer_top: parameter ACC_BITS = %0d must be <= %0d (the requant unit's %0d-bit product of it and a %0d-bit multiplier)",
                   ACC_BITS, A64 - CONST_MULT_BITS - 1, A64, CONST_MULT_BITS);
`else
            lowbit_param_error__ACC_BITS_must_be_at_most_32 stop ();
`endif
        end
        if (OUT_BITS < 1 || OUT_BITS > 32) begin : g_param_error_6
`ifdef VERILATOR
            $error("lowbit_layer_top: parameter OUT_BITS = %0d must be in 1..32", OUT_BITS);
`else
            lowbit_param_error__OUT_BITS_must_be_in_1_to_32 stop ();
`endif
        end
        if (DATAFLOW != 0 && DATAFLOW != 1) begin : g_param_error_7
`ifdef VERILATOR
            $error("lowbit_layer_top: parameter DATAFLOW = %0d must be 0 (weight-stationary) or 1 (output-stationary)",
                   DATAFLOW);
`else
            lowbit_param_error__DATAFLOW_must_be_0_or_1 stop ();
`endif
        end
    endgenerate
endmodule
`default_nettype wire
