// lowbit_serial_pe: bit-serial MAC PE for a weight-stationary systolic array, runtime precision (Verilog-2005).
//
// SERIAL = 0 (Stripes): the streamed operand (a_in) goes one bit per beat against the whole stationary one (w_reg):
// a_bits beats per element. SERIAL = 1 (Loom): one a_in bit times one w_reg bit per beat: a_bits * w_bits beats.
// SERIAL = 2 (Stripes on an input-stationary array, where the stationary register holds the activation): one w_reg
// bit per beat against the whole a_in: w_bits beats. These are sim's `serial` cycles per streamed element (pe.kind:
// bitserial, serial: activation | both); SERIAL = 2 is the activation-serial PE of an array that runs the
// transposed GEMM, whose stationary operand is the activation.
//
// Beats. An element travels right together with its beat (beat_valid, beat_ja = a_in bit, beat_jw = w_reg bit, 0
// when that operand is not serialized); the host sends beats ja = 0..a_bits-1 (SERIAL 0), ja fastest then jw =
// 0..w_bits-1 (1), or jw = 0..w_bits-1 (2), one beat per step, with the element held over its beats. Per rising
// edge with en = 1:
//   if (load_w) w_reg <= w_in;                                          (the weight shift chain, as lowbit_mac_pe)
//   a_out <= a_in; beat_*_out <= beat_*_in;                             (the activation and its beat move right)
//   on a valid beat: t = term(a_in, w_reg, beat)                        (this beat's partial product)
//     not the last beat of the element:  local <= local + t
//     the last beat (ja = a_bits-1 and, for Loom, jw = w_bits-1):  psum_out <= psum_in + local + t; local <= 0
// psum_out holds between last beats, so partial sums move down one row per element, on its last beat. The terms
// are exact: t = a[ja] * w * 2^ja (SERIAL 0), a[ja] * w[jw] * 2^(ja+jw) (1), a * w[jw] * 2^jw (2), where the top bit of a signed
// operand weighs -2^(bits-1) (two's complement) and an unsigned one +2^(bits-1); bits above a_bits / w_bits are
// ignored. The products of one element sum to a * w exactly; psum_out wraps modulo 2^ACC_BITS.
// en = 0 freezes every register; rst_n is a synchronous active-low reset.
`default_nettype none
module lowbit_serial_pe #(
    parameter MAX_BITS    = 8,   // widest operand: runtime widths a_bits, w_bits in 1..MAX_BITS
    parameter SERIAL      = 0,   // serialized operand: 0 a_in (Stripes), 1 both (Loom), 2 w_reg (Stripes on is)
    parameter ACC_BITS    = 32
) (
    clk, rst_n, en, load_w, w_bits, a_bits, w_signed, a_signed, w_in, w_out, a_in, a_out,
    beat_valid_in, beat_ja_in, beat_jw_in, beat_valid_out, beat_ja_out, beat_jw_out, psum_in, psum_out
);
    localparam NB     = $clog2(MAX_BITS + 1);  // a runtime width, 1..MAX_BITS
    localparam IB     = (MAX_BITS > 1) ? $clog2(MAX_BITS) : 1;  // a bit index, 0..MAX_BITS-1
    localparam L_BITS = 2 * MAX_BITS + 1;       // one element's product and its partial sums, exact
    localparam EXT    = (ACC_BITS > L_BITS) ? ACC_BITS - L_BITS : 0;

    input  wire                clk;
    input  wire                rst_n;
    input  wire                en;
    input  wire                load_w;
    input  wire [NB-1:0]       w_bits;          // runtime weight width (1..MAX_BITS)
    input  wire [NB-1:0]       a_bits;          // runtime activation width (1..MAX_BITS)
    input  wire                w_signed;        // weights are two's complement (else unsigned)
    input  wire                a_signed;        // activations are two's complement (else unsigned)
    input  wire [MAX_BITS-1:0] w_in;
    output wire [MAX_BITS-1:0] w_out;
    input  wire [MAX_BITS-1:0] a_in;
    output reg  [MAX_BITS-1:0] a_out;
    input  wire                beat_valid_in;   // a_in carries a beat this step
    /* verilator lint_off UNUSEDSIGNAL */
    input  wire [IB-1:0]       beat_ja_in;      // its a_in bit (SERIAL 0, 1; 0 for SERIAL 2)
    /* verilator lint_on UNUSEDSIGNAL */
    /* verilator lint_off UNUSEDSIGNAL */       // SERIAL 0 ignores the w_reg bit index, 2 the a_in one
    input  wire [IB-1:0]       beat_jw_in;      // its w_reg bit (SERIAL 1, 2; 0 for SERIAL 0)
    /* verilator lint_on UNUSEDSIGNAL */
    output reg                 beat_valid_out;
    output reg  [IB-1:0]       beat_ja_out;
    output reg  [IB-1:0]       beat_jw_out;
    input  wire [ACC_BITS-1:0] psum_in;
    output reg  [ACC_BITS-1:0] psum_out;

    reg [MAX_BITS-1:0] w_reg;
    reg [L_BITS-1:0]   local_sum;
    assign w_out = w_reg;

    // the top bit of each operand (its index: width - 1)
    /* verilator lint_off UNUSEDSIGNAL */  // an index needs only the low IB bits of width - 1
    wire [NB-1:0] w_msb_n = w_bits - 1'b1;
    wire [NB-1:0] a_msb_n = a_bits - 1'b1;
    /* verilator lint_on UNUSEDSIGNAL */
    wire [IB-1:0] w_msb   = w_msb_n[IB-1:0];
    wire [IB-1:0] a_msb   = a_msb_n[IB-1:0];

    // this beat's bits and their place values: the top bit of a signed operand weighs -2^(bits-1)
    wire a_bit = a_in[beat_ja_in];
    wire a_top = a_signed & (beat_ja_in == a_msb);
    wire w_bit = w_reg[beat_jw_in];
    wire w_top = w_signed & (beat_jw_in == w_msb);
    wire [L_BITS-1:0] term;
    wire              last_beat;
    generate
        if (SERIAL == 1) begin : g_loom
            wire [IB:0]       sh  = {1'b0, beat_ja_in} + {1'b0, beat_jw_in};
            wire [L_BITS-1:0] one = {{(L_BITS - 1){1'b0}}, 1'b1} << sh;
            assign term      = !(a_bit & w_bit) ? {L_BITS{1'b0}} : (a_top ^ w_top) ? -one : one;
            assign last_beat = (beat_ja_in == a_msb) && (beat_jw_in == w_msb);
        end else begin : g_stripes
            // the whole operand (w_reg for SERIAL 0, a_in for 2) as an exact signed L_BITS value, bits above its
            // width ignored, times the serialized operand's bit
            wire [MAX_BITS-1:0] x_word  = (SERIAL == 0) ? w_reg : a_in;
            wire [NB-1:0]       x_bits  = (SERIAL == 0) ? w_bits : a_bits;
            wire [IB-1:0]       x_msb   = (SERIAL == 0) ? w_msb : a_msb;
            wire                x_sgn   = (SERIAL == 0) ? w_signed : a_signed;
            wire [IB-1:0]       j       = (SERIAL == 0) ? beat_ja_in : beat_jw_in;
            wire                s_bit   = (SERIAL == 0) ? a_bit : w_bit;
            wire                s_top   = (SERIAL == 0) ? a_top : w_top;
            wire [MAX_BITS-1:0] x_mask  = ~({MAX_BITS{1'b1}} << x_bits);
            wire                x_neg   = x_sgn & x_word[x_msb];
            wire [L_BITS-1:0]   x_low   = {{(L_BITS - MAX_BITS){1'b0}}, x_word & x_mask};
            wire [L_BITS-1:0]   x_val   = x_neg ? ({L_BITS{1'b1}} << x_bits) | x_low : x_low;
            wire [L_BITS-1:0]   shifted = x_val << j;
            assign term      = !s_bit ? {L_BITS{1'b0}} : s_top ? -shifted : shifted;
            assign last_beat = (SERIAL == 0) ? (beat_ja_in == a_msb) : (beat_jw_in == w_msb);
        end
    endgenerate
    wire [L_BITS-1:0]   sum   = local_sum + term;
    wire [ACC_BITS-1:0] sum_x = {{EXT{sum[L_BITS-1]}}, sum[L_BITS-1:0]};

    always @(posedge clk) begin
        if (!rst_n) begin
            w_reg          <= {MAX_BITS{1'b0}};
            a_out          <= {MAX_BITS{1'b0}};
            beat_valid_out <= 1'b0;
            beat_ja_out    <= {IB{1'b0}};
            beat_jw_out    <= {IB{1'b0}};
            local_sum      <= {L_BITS{1'b0}};
            psum_out       <= {ACC_BITS{1'b0}};
        end else if (en) begin
            if (load_w) w_reg <= w_in;
            a_out          <= a_in;
            beat_valid_out <= beat_valid_in;
            beat_ja_out    <= beat_ja_in;
            beat_jw_out    <= beat_jw_in;
            if (beat_valid_in) begin
                if (last_beat) begin
                    psum_out  <= psum_in + sum_x;
                    local_sum <= {L_BITS{1'b0}};
                end else begin
                    local_sum <= sum;
                end
            end
        end
    end

    // ---- parameter checks, at elaboration: Verilator reports the message ($error in a generate block); other tools
    // stop on the missing module whose name states the rule (tests/rtl/test_params.py drives every check) --------
    generate
        if (MAX_BITS < 1) begin : g_param_error_0
`ifdef VERILATOR
            $error("lowbit_serial_pe: parameter MAX_BITS = %0d must be >= 1", MAX_BITS);
`else
            lowbit_param_error__MAX_BITS_must_be_at_least_1 stop ();
`endif
        end
        if (SERIAL < 0 || SERIAL > 2) begin : g_param_error_1
`ifdef VERILATOR
            $error("lowbit_serial_pe: parameter SERIAL = %0d must be 0 (Stripes), 1 (Loom) or 2 (Stripes, stationary bits)",
                   SERIAL);
`else
            lowbit_param_error__SERIAL_must_be_0_to_2 stop ();
`endif
        end
        if (ACC_BITS < L_BITS) begin : g_param_error_2
`ifdef VERILATOR
            $error("lowbit_serial_pe: parameter ACC_BITS = %0d must be >= 2 * MAX_BITS + 1 = %0d", ACC_BITS, L_BITS);
`else
            lowbit_param_error__ACC_BITS_must_be_at_least_2_MAX_BITS_plus_1 stop ();
`endif
        end
    endgenerate
endmodule
`default_nettype wire
