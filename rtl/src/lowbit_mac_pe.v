// lowbit_mac_pe: fixed-width multiply-accumulate PE for a weight-stationary systolic array.
//
// Dataflow (R x C array): weights enter from the top and shift DOWN while load_w = 1 (w_out = w_reg feeds the PE
// below); activations move RIGHT one PE per cycle (a_out); partial sums move DOWN one PE per cycle (psum_out).
//
// Per rising clock edge with en = 1:
//   if (load_w) w_reg <= w_in;                        (else w_reg holds)
//   a_out    <= a_in;
//   psum_out <= psum_in + ext(w_reg) * ext(a_in);     (always, also while loading; uses the OLD w_reg)
// ext() is sign extension when W_SIGNED / A_SIGNED is 1 and zero extension when 0. The product is exact in
// W_BITS + A_BITS + 1 bits and is sign-extended to ACC_BITS; the addition wraps modulo 2^ACC_BITS.
// With en = 0 nothing changes (global stall). rst_n is a synchronous active-low reset that clears all registers.
// Requires ACC_BITS >= W_BITS + A_BITS + 1.
`default_nettype none
module lowbit_mac_pe #(
    parameter W_BITS   = 8,
    parameter A_BITS   = 8,
    parameter ACC_BITS = 32,
    parameter W_SIGNED = 1,
    parameter A_SIGNED = 1
) (
    input  wire                clk,
    input  wire                rst_n,
    input  wire                en,
    input  wire                load_w,
    input  wire [W_BITS-1:0]   w_in,
    output wire [W_BITS-1:0]   w_out,
    input  wire [A_BITS-1:0]   a_in,
    output reg  [A_BITS-1:0]   a_out,
    input  wire [ACC_BITS-1:0] psum_in,
    output reg  [ACC_BITS-1:0] psum_out
);
    // Product width: signed (W+1) x (A+1) operands, result always fits in W+A+1 bits (signed).
    localparam P_BITS = W_BITS + A_BITS + 1;
    localparam EXT_BITS = (ACC_BITS >= P_BITS) ? ACC_BITS - P_BITS + 1 : 1;  // >= 1 also when ACC_BITS is refused

    reg  [W_BITS-1:0] w_reg;

    // One extra bit per operand carries its sign (0 for unsigned operands), so one signed multiplier covers
    // all four signedness combinations.
    wire                     w_msb = (W_SIGNED != 0) ? w_reg[W_BITS-1] : 1'b0;
    wire                     a_msb = (A_SIGNED != 0) ? a_in[A_BITS-1] : 1'b0;
    wire signed [W_BITS:0]   w_x   = {w_msb, w_reg};
    wire signed [A_BITS:0]   a_x   = {a_msb, a_in};
    wire signed [P_BITS-1:0] prod  = w_x * a_x;
    // Sign-extend the product to the accumulator width.
    wire [ACC_BITS-1:0]      prod_ext = {{EXT_BITS{prod[P_BITS-1]}}, prod[P_BITS-2:0]};

    assign w_out = w_reg;

    always @(posedge clk) begin
        if (!rst_n) begin
            w_reg    <= {W_BITS{1'b0}};
            a_out    <= {A_BITS{1'b0}};
            psum_out <= {ACC_BITS{1'b0}};
        end else if (en) begin
            if (load_w) w_reg <= w_in;
            a_out    <= a_in;
            psum_out <= psum_in + prod_ext;
        end
    end

    // ---- parameter checks, at elaboration: Verilator reports the message ($error in a generate block); other tools
    // stop on the missing module whose name states the rule (tests/rtl/test_params.py drives every check) --------
    generate
        if (W_BITS < 1) begin : g_param_error_0
`ifdef VERILATOR
            $error("lowbit_mac_pe: parameter W_BITS = %0d must be >= 1", W_BITS);
`else
            lowbit_param_error__W_BITS_must_be_at_least_1 stop ();
`endif
        end
        if (A_BITS < 1) begin : g_param_error_1
`ifdef VERILATOR
            $error("lowbit_mac_pe: parameter A_BITS = %0d must be >= 1", A_BITS);
`else
            lowbit_param_error__A_BITS_must_be_at_least_1 stop ();
`endif
        end
        if (W_SIGNED != 0 && W_SIGNED != 1) begin : g_param_error_2
`ifdef VERILATOR
            $error("lowbit_mac_pe: parameter W_SIGNED = %0d must be 0 or 1", W_SIGNED);
`else
            lowbit_param_error__W_SIGNED_must_be_0_or_1 stop ();
`endif
        end
        if (A_SIGNED != 0 && A_SIGNED != 1) begin : g_param_error_3
`ifdef VERILATOR
            $error("lowbit_mac_pe: parameter A_SIGNED = %0d must be 0 or 1", A_SIGNED);
`else
            lowbit_param_error__A_SIGNED_must_be_0_or_1 stop ();
`endif
        end
        if (ACC_BITS < W_BITS + A_BITS + 1) begin : g_param_error_4
`ifdef VERILATOR
            $error("lowbit_mac_pe: parameter ACC_BITS = %0d must be >= W_BITS + A_BITS + 1 = %0d",
                   ACC_BITS, W_BITS + A_BITS + 1);
`else
            lowbit_param_error__ACC_BITS_must_be_at_least_W_BITS_plus_A_BITS_plus_1 stop ();
`endif
        end
    endgenerate
endmodule
`default_nettype wire
