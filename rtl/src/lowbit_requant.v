// lowbit_requant: fixed-point requantization unit of the integer datapath (docs/formats.md, "Integer export", 2.2).
//
// For output channel r in row block v, with one partial sum P_h per input block h (n_H >= 1 beats):
//   A = (B_r << T_v) + sum_h M_{v,h} * P_h                                  (ACC_BITS, two's complement)
//   y = clamp( ((A + 2^(S_v-1)) >>> S_v) + z_y , lo, hi )                   (round half up: ties towards +inf)
// The rounding shift is computed as (A >>> S) + A[S-1], which equals floor(A / 2^S + 1/2) exactly, also for A < 0.
//
// Beats. One beat per cycle; a beat is sampled on a rising edge with en = 1 and in_valid = 1:
//   in_first = 1: the accumulator starts from (bias << bias_shift)       (first block h = 0 of an output)
//   in_first = 0: it continues from the previous beat's result (in_acc_ext = 0, internal register: the blocks of
//                 one output come back to back, gaps allowed) or from acc_in (in_acc_ext = 1: the accumulator lives
//                 in an external buffer, e.g. when the blocks of many outputs are interleaved)
//   in_last  = 1: the beat completes the output; shift, zero_point, out_min and out_max are used (sampled with it).
// An output with n_H = 1 is a single beat with in_first = in_last = 1.
//
// Latency. The beat sampled at edge t sets acc_out (A after this beat) and acc_valid at edge t; for a last beat,
// out_code and out_valid are set at edge t+1: 2 cycles from in_valid to out_valid, throughput 1 beat per cycle.
// en = 0 freezes all registers (global stall); rst_n is a synchronous active-low reset of the valid flags and data.
//
// Ranges (guaranteed by quant.integer's export): 0 <= mult <= 2^MULT_BITS - 1; shift in 1..62 (shift = 0 gives
// A + z_y without rounding); bias_shift <= shift; |A| + 2^(S-1) < 2^(ACC_BITS-1); out_min <= out_max, both and
// zero_point representable as OUT_BITS-bit codes (signed or unsigned: the clamp bounds define which). zero_point, out_min and out_max are
// OUT_BITS+1-bit signed ports so that unsigned codes up to 2^OUT_BITS - 1 fit. Requires
// ACC_BITS >= PSUM_BITS + MULT_BITS + 1 and ACC_BITS >= BIAS_BITS.
`default_nettype none
module lowbit_requant #(
    parameter PSUM_BITS  = 32,
    parameter MULT_BITS  = 31,
    parameter ACC_BITS   = 64,
    parameter BIAS_BITS  = 32,
    parameter SHIFT_BITS = 6,
    parameter OUT_BITS   = 8
) (
    input  wire                  clk,
    input  wire                  rst_n,
    input  wire                  en,
    // beat
    input  wire                  in_valid,
    input  wire                  in_first,
    input  wire                  in_last,
    input  wire                  in_acc_ext,
    input  wire [PSUM_BITS-1:0]  psum,        // P_h, signed
    input  wire [MULT_BITS-1:0]  mult,        // M_{v,h}, unsigned
    input  wire [BIAS_BITS-1:0]  bias,        // B_r, signed (used when in_first)
    input  wire [SHIFT_BITS-1:0] bias_shift,  // T_v (used when in_first)
    input  wire [ACC_BITS-1:0]   acc_in,      // external accumulator (used when !in_first && in_acc_ext)
    input  wire [SHIFT_BITS-1:0] shift,       // S_v (used when in_last)
    input  wire [OUT_BITS:0]     zero_point,  // z_y, signed (used when in_last)
    input  wire [OUT_BITS:0]     out_min,     // lo, signed (used when in_last)
    input  wire [OUT_BITS:0]     out_max,     // hi, signed (used when in_last)
    // rescaled accumulator after each beat (1 cycle after the beat)
    output reg                   acc_valid,
    output reg                   acc_last,
    output reg  [ACC_BITS-1:0]   acc_out,
    // output code (2 cycles after the last beat)
    output reg                   out_valid,
    output reg  [OUT_BITS-1:0]   out_code
);
    localparam PROD_BITS = PSUM_BITS + MULT_BITS + 1;
    localparam Y_BITS    = ACC_BITS + 1;
    // sign-extension widths, kept >= 1 (>= 0 for the codes) also when the parameters are refused
    localparam P_EXT     = (ACC_BITS >= PROD_BITS) ? ACC_BITS - PROD_BITS + 1 : 1;
    localparam B_EXT     = (ACC_BITS >= BIAS_BITS) ? ACC_BITS - BIAS_BITS + 1 : 1;
    localparam C_EXT     = (Y_BITS > OUT_BITS + 1) ? Y_BITS - OUT_BITS - 1 : 0;

    // ---- stage 1: A <= base + M * P ----------------------------------------------------------------------------
    wire signed [MULT_BITS:0]     m_x  = {1'b0, mult};
    wire signed [PSUM_BITS-1:0]   p_x  = psum;
    wire signed [PROD_BITS-1:0]   prod = m_x * p_x;
    wire        [ACC_BITS-1:0]    prod_ext = {{P_EXT{prod[PROD_BITS-1]}}, prod[PROD_BITS-2:0]};
    wire        [ACC_BITS-1:0]    bias_ext = {{B_EXT{bias[BIAS_BITS-1]}}, bias[BIAS_BITS-2:0]};
    wire        [ACC_BITS-1:0]    base = in_first   ? (bias_ext << bias_shift)
                                       : in_acc_ext ? acc_in : acc_out;

    reg [SHIFT_BITS-1:0] s_q;
    reg [OUT_BITS:0]     zp_q, lo_q, hi_q;

    always @(posedge clk) begin
        if (!rst_n) begin
            acc_valid <= 1'b0;
            acc_last  <= 1'b0;
            acc_out   <= {ACC_BITS{1'b0}};
            s_q       <= {SHIFT_BITS{1'b0}};
            zp_q      <= {(OUT_BITS + 1){1'b0}};
            lo_q      <= {(OUT_BITS + 1){1'b0}};
            hi_q      <= {(OUT_BITS + 1){1'b0}};
        end else if (en) begin
            acc_valid <= in_valid;
            acc_last  <= in_valid & in_last;
            if (in_valid) begin
                acc_out <= base + prod_ext;
                if (in_last) begin
                    s_q  <= shift;
                    zp_q <= zero_point;
                    lo_q <= out_min;
                    hi_q <= out_max;
                end
            end
        end
    end

    // ---- stage 2: rounding shift, zero point, clamp --------------------------------------------------------------
    wire signed [ACC_BITS-1:0] acc_s   = acc_out;
    wire signed [ACC_BITS-1:0] shifted = acc_s >>> s_q;
    wire                       rnd     = (s_q == {SHIFT_BITS{1'b0}}) ? 1'b0 : acc_out[s_q - 1'b1];
    wire        [Y_BITS-1:0]   zp_ext  = {{C_EXT{zp_q[OUT_BITS]}}, zp_q};
    wire        [Y_BITS-1:0]   lo_ext  = {{C_EXT{lo_q[OUT_BITS]}}, lo_q};
    wire        [Y_BITS-1:0]   hi_ext  = {{C_EXT{hi_q[OUT_BITS]}}, hi_q};
    wire signed [Y_BITS-1:0]   y       = {shifted[ACC_BITS-1], shifted} + zp_ext + {{(Y_BITS - 1){1'b0}}, rnd};
    wire signed [Y_BITS-1:0]   lo_s    = lo_ext;
    wire signed [Y_BITS-1:0]   hi_s    = hi_ext;
    wire        [Y_BITS-1:0]   y_clamp = (y < lo_s) ? lo_ext : (y > hi_s) ? hi_ext : y;

    always @(posedge clk) begin
        if (!rst_n) begin
            out_valid <= 1'b0;
            out_code  <= {OUT_BITS{1'b0}};
        end else if (en) begin
            out_valid <= acc_valid & acc_last;
            if (acc_valid & acc_last) out_code <= y_clamp[OUT_BITS-1:0];
        end
    end

    // The clamped value fits OUT_BITS by construction (signed or unsigned codes, per out_min/out_max).
    wire unused_hi = &{1'b0, y_clamp[Y_BITS-1:OUT_BITS]};

    // ---- parameter checks, at elaboration: Verilator reports the message ($error in a generate block); other tools
    // stop on the missing module whose name states the rule (tests/rtl/test_params.py drives every check) --------
    generate
        if (PSUM_BITS < 2) begin : g_param_error_0
`ifdef VERILATOR
            $error("lowbit_requant: parameter PSUM_BITS = %0d must be >= 2", PSUM_BITS);
`else
            lowbit_param_error__PSUM_BITS_must_be_at_least_2 stop ();
`endif
        end
        if (MULT_BITS < 1) begin : g_param_error_1
`ifdef VERILATOR
            $error("lowbit_requant: parameter MULT_BITS = %0d must be >= 1", MULT_BITS);
`else
            lowbit_param_error__MULT_BITS_must_be_at_least_1 stop ();
`endif
        end
        if (BIAS_BITS < 2) begin : g_param_error_2
`ifdef VERILATOR
            $error("lowbit_requant: parameter BIAS_BITS = %0d must be >= 2", BIAS_BITS);
`else
            lowbit_param_error__BIAS_BITS_must_be_at_least_2 stop ();
`endif
        end
        if (SHIFT_BITS < 1) begin : g_param_error_3
`ifdef VERILATOR
            $error("lowbit_requant: parameter SHIFT_BITS = %0d must be >= 1", SHIFT_BITS);
`else
            lowbit_param_error__SHIFT_BITS_must_be_at_least_1 stop ();
`endif
        end
        if (ACC_BITS < PSUM_BITS + MULT_BITS + 1) begin : g_param_error_4
`ifdef VERILATOR
            $error("lowbit_requant: parameter ACC_BITS = %0d must be >= PSUM_BITS + MULT_BITS + 1 = %0d",
                   ACC_BITS, PSUM_BITS + MULT_BITS + 1);
`else
            lowbit_param_error__ACC_BITS_must_be_at_least_PSUM_BITS_plus_MULT_BITS_plus_1 stop ();
`endif
        end
        if (ACC_BITS < BIAS_BITS) begin : g_param_error_5
`ifdef VERILATOR
            $error("lowbit_requant: parameter ACC_BITS = %0d must be >= BIAS_BITS = %0d", ACC_BITS, BIAS_BITS);
`else
            lowbit_param_error__ACC_BITS_must_be_at_least_BIAS_BITS stop ();
`endif
        end
        if (OUT_BITS < 1 || OUT_BITS > ACC_BITS) begin : g_param_error_6
`ifdef VERILATOR
            $error("lowbit_requant: parameter OUT_BITS = %0d must be in 1..ACC_BITS (%0d)", OUT_BITS, ACC_BITS);
`else
            lowbit_param_error__OUT_BITS_must_be_in_1_to_ACC_BITS stop ();
`endif
        end
    endgenerate
endmodule
`default_nettype wire
