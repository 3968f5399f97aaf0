// lowbit_fusion_pe: precision-scalable MAC PE in the Bit Fusion style, built from 16 2-bit x 2-bit bricks.
//
// Runtime modes (independent for weights and activations): 0 = 2-bit, 1 = 4-bit, 2 = 8-bit (3 is treated as 8-bit).
// Operands are packed LSB-first in 32-bit words: element j occupies bits [j*w +: w] of w_in/w_reg and
// [j*a +: a] of a_in. Per cycle the PE sums P = (8/a)*(8/w) products (= sim's `pack`):
//   psum_out <= psum_in + sum_{j<P} w_j * a_j
// with w_j, a_j sign-extended when w_signed / a_signed is 1 and zero-extended otherwise. Bits above P*w of the
// weight word and above P*a of the activation word are ignored. The sum is exact and sign-extended to ACC_BITS;
// the accumulation wraps modulo 2^ACC_BITS.
//
// Register behaviour is the same as lowbit_mac_pe: with en = 1, if (load_w) w_reg <= w_in; a_out <= a_in;
// psum_out <= psum_in + (products of the OLD w_reg and a_in). en = 0 freezes everything; rst_n is a synchronous
// active-low reset. Modes and signedness are combinational inputs that apply to the MAC of the current cycle.
//
// Brick decomposition. With nw = w/2 and na = a/2 slices per operand (1, 2 or 4), product j needs nw*na bricks;
// P * nw * na = 16 for every mode, so all 16 bricks are always busy. Brick b (4 bits) is split as
//   b = { j, s, t }   with t = b mod na (activation slice), s = (b / na) mod nw (weight slice), j = product index
// and computes  ws_s * at_t * 4^(s+t),  where ws_s = w_reg[2*(j*nw+s) +: 2], at_t = a_in[2*(j*na+t) +: 2]; a slice is
// signed only when it is the top slice of a signed operand. Bricks form 4 groups of 4 (g = b[3:2]); in every mode
// the shift 2*(s+t) splits into an in-group shift (depends on b[1:0]) plus a group shift (depends on g), so the
// sum is a two-level shift-add tree: 4 narrow group adders, then one adder over the 4 shifted group sums.
`default_nettype none
module lowbit_fusion_pe #(
    parameter ACC_BITS = 32
) (
    input  wire                clk,
    input  wire                rst_n,
    input  wire                en,
    input  wire                load_w,
    input  wire [1:0]          w_mode,
    input  wire [1:0]          a_mode,
    input  wire                w_signed,
    input  wire                a_signed,
    input  wire [31:0]         w_in,
    output wire [31:0]         w_out,
    input  wire [31:0]         a_in,
    output reg  [31:0]         a_out,
    input  wire [ACC_BITS-1:0] psum_in,
    output reg  [ACC_BITS-1:0] psum_out
);
    // Widths: a brick product is in [-6, 9] (6-bit signed). A group's value is one 2 x 8, 8 x 2 or 4 x 4 product
    // or the sum of 2 to 4 smaller ones: |value| <= 3*255 = 765 < 2^10 (G_BITS = 11, signed). The total is
    // bounded by (2^8-1)^2 = 65025 < 2^16 (T_BITS = 17, signed). The adders wrap, so only the FINAL group and total
    // values need to fit these widths.
    localparam G_BITS = 11;
    localparam T_BITS = 17;
    localparam EXT_BITS = (ACC_BITS > T_BITS) ? ACC_BITS - T_BITS : 0;  // >= 0 also when ACC_BITS is refused

    reg [31:0] w_reg;
    assign w_out = w_reg;

    // log2 of slices per operand: 0 (2-bit), 1 (4-bit), 2 (8-bit)
    wire [1:0] lw = (w_mode == 2'd0) ? 2'd0 : (w_mode == 2'd1) ? 2'd1 : 2'd2;
    wire [1:0] la = (a_mode == 2'd0) ? 2'd0 : (a_mode == 2'd1) ? 2'd1 : 2'd2;

    // s + t of brick b (its shift is 2*(s+t)) for the current modes.
    function [3:0] slice_sum;
        input [3:0] b;
        input [1:0] lw_f;
        input [1:0] la_f;
        begin
            slice_sum = (b & ((4'd1 << la_f) - 4'd1)) + ((b >> la_f) & ((4'd1 << lw_f) - 4'd1));
        end
    endfunction

    // Group sums: g_sum[g] = sum over the 4 bricks of group g of brick << in-group shift.
    wire [4*G_BITS-1:0] g_sum;

    genvar g, k;
    generate
        for (g = 0; g < 4; g = g + 1) begin : g_group
            wire [4*G_BITS-1:0] terms;
            for (k = 0; k < 4; k = k + 1) begin : g_brick
                localparam [3:0] B = 4*g + k;
                // Operand slice selection (index in 2-bit slices of the packed words).
                wire [3:0] w_idx = B >> la;                                // j*nw + s
                wire [3:0] t_i   = B & ((4'd1 << la) - 4'd1);              // t
                wire [3:0] j_i   = B >> ({1'b0, la} + {1'b0, lw});          // j
                wire [3:0] s_i   = (B >> la) & ((4'd1 << lw) - 4'd1);      // s
                wire [3:0] a_idx = (j_i << la) | t_i;                       // j*na + t
                wire [1:0] w_sl  = w_reg[{w_idx, 1'b0} +: 2];
                wire [1:0] a_sl  = a_in[{a_idx, 1'b0} +: 2];
                // Top slice of a signed operand carries the sign.
                wire       w_top = (s_i == ((4'd1 << lw) - 4'd1));
                wire       a_top = (t_i == ((4'd1 << la) - 4'd1));
                wire signed [2:0] w_x = {w_signed & w_top & w_sl[1], w_sl};
                wire signed [2:0] a_x = {a_signed & a_top & a_sl[1], a_sl};
                // The 2-bit x 2-bit brick (3-bit signed operands, exact 6-bit signed product).
                wire signed [5:0] prod = w_x * a_x;
                // In-group shift: 2 * (slice_sum(B) - slice_sum(group base)), at most 6 bits.
                wire [3:0] sh = slice_sum(B, lw, la) - slice_sum(4*g, lw, la);
                wire [G_BITS-1:0] prod_x = {{(G_BITS - 6){prod[5]}}, prod};
                assign terms[k*G_BITS +: G_BITS] = prod_x << {sh, 1'b0};
            end
            assign g_sum[g*G_BITS +: G_BITS] = terms[0*G_BITS +: G_BITS] + terms[1*G_BITS +: G_BITS]
                                             + terms[2*G_BITS +: G_BITS] + terms[3*G_BITS +: G_BITS];
        end
    endgenerate

    // Second level: each group sum shifted by 2 * slice_sum(group base) (0..6 bits), then summed.
    wire [4*T_BITS-1:0] g_shifted;
    generate
        for (g = 0; g < 4; g = g + 1) begin : g_level2
            wire [3:0]        gsh = slice_sum(4*g, lw, la);
            wire [G_BITS-1:0] gs  = g_sum[g*G_BITS +: G_BITS];
            wire [T_BITS-1:0] gx  = {{(T_BITS - G_BITS){gs[G_BITS-1]}}, gs};
            assign g_shifted[g*T_BITS +: T_BITS] = gx << {gsh, 1'b0};
        end
    endgenerate

    wire [T_BITS-1:0] total = g_shifted[0*T_BITS +: T_BITS] + g_shifted[1*T_BITS +: T_BITS]
                            + g_shifted[2*T_BITS +: T_BITS] + g_shifted[3*T_BITS +: T_BITS];
    wire [ACC_BITS-1:0] total_x = {{EXT_BITS{total[T_BITS-1]}}, total};

    always @(posedge clk) begin
        if (!rst_n) begin
            w_reg    <= 32'd0;
            a_out    <= 32'd0;
            psum_out <= {ACC_BITS{1'b0}};
        end else if (en) begin
            if (load_w) w_reg <= w_in;
            a_out    <= a_in;
            psum_out <= psum_in + total_x;
        end
    end

    // ---- parameter checks, at elaboration: Verilator reports the message ($error in a generate block); other tools
    // stop on the missing module whose name states the rule (tests/rtl/test_params.py drives every check) --------
    generate
        if (ACC_BITS < T_BITS) begin : g_param_error_0
`ifdef VERILATOR
            $error("lowbit_fusion_pe: parameter ACC_BITS = %0d must be >= %0d (a sum of 8 x 8-bit products)",
                   ACC_BITS, T_BITS);
`else
            lowbit_param_error__ACC_BITS_must_be_at_least_17 stop ();
`endif
        end
    endgenerate
endmodule
`default_nettype wire
