// lowbit_serial_pe: bit-serial MAC PE for a weight-stationary systolic array, runtime precision (Verilog-2005).
//
// SERIAL_BOTH = 0 (Stripes): the activation streams one bit per beat against the whole weight: a_bits beats per
// activation. SERIAL_BOTH = 1 (Loom): one activation bit times one weight bit per beat: a_bits * w_bits beats. These
// are sim's `serial` cycles per streamed element (pe.kind: bitserial, serial: activation | both).
//
// Beats. An activation travels right together with its beat (beat_valid, beat_ja = activation bit, beat_jw = weight
// bit, always 0 for Stripes); the host sends beats ja = 0..a_bits-1 (Stripes) or, for Loom, ja fastest then jw =
// 0..w_bits-1, one beat per step, with the activation value held over its beats. Per rising edge with en = 1:
//   if (load_w) w_reg <= w_in;                                          (the weight shift chain, as lowbit_mac_pe)
//   a_out <= a_in; beat_*_out <= beat_*_in;                             (the activation and its beat move right)
//   on a valid beat: t = term(a_in, w_reg, beat)                        (this beat's partial product)
//     not the last beat of the element:  local <= local + t
//     the last beat (ja = a_bits-1 and, for Loom, jw = w_bits-1):  psum_out <= psum_in + local + t; local <= 0
// psum_out holds between last beats, so partial sums move down one row per element, on its last beat. The terms
// are exact: Stripes t = a[ja] * w * 2^ja, Loom t = a[ja] * w[jw] * 2^(ja+jw), where the top bit of a signed
// operand weighs -2^(bits-1) (two's complement) and an unsigned one +2^(bits-1); bits above a_bits / w_bits are
// ignored. The products of one element sum to a * w exactly; psum_out wraps modulo 2^ACC_BITS.
// en = 0 freezes every register; rst_n is a synchronous active-low reset.
`default_nettype none
module lowbit_serial_pe #(
    parameter MAX_BITS    = 8,   // widest operand: runtime widths a_bits, w_bits in 1..MAX_BITS
    parameter SERIAL_BOTH = 0,   // 0 Stripes (activation-serial), 1 Loom (weight- and activation-serial)
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
    input  wire [IB-1:0]       beat_ja_in;      // its activation bit
    /* verilator lint_off UNUSEDSIGNAL */       // Stripes ignores the weight-bit index
    input  wire [IB-1:0]       beat_jw_in;      // its weight bit (Loom; 0 for Stripes)
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

    // this beat's activation bit and its place value
    wire a_bit = a_in[beat_ja_in];
    wire a_top = a_signed & (beat_ja_in == a_msb);  // the activation's top bit weighs -2^(a_bits-1)
    wire [L_BITS-1:0] term;
    wire              last_beat;
    generate
        if (SERIAL_BOTH == 0) begin : g_stripes
            // the weight as an exact signed L_BITS value (bits above w_bits ignored)
            wire [MAX_BITS-1:0] w_mask  = ~({MAX_BITS{1'b1}} << w_bits);
            wire                w_neg   = w_signed & w_reg[w_msb];
            wire [L_BITS-1:0]   w_low   = {{(L_BITS - MAX_BITS){1'b0}}, w_reg & w_mask};
            wire [L_BITS-1:0]   w_val   = w_neg ? ({L_BITS{1'b1}} << w_bits) | w_low : w_low;
            wire [L_BITS-1:0]   shifted = w_val << beat_ja_in;
            assign term      = !a_bit ? {L_BITS{1'b0}} : a_top ? -shifted : shifted;
            assign last_beat = (beat_ja_in == a_msb);
        end else begin : g_loom
            wire w_bit = w_reg[beat_jw_in];
            wire w_top = w_signed & (beat_jw_in == w_msb);
            wire [IB:0]       sh  = {1'b0, beat_ja_in} + {1'b0, beat_jw_in};
            wire [L_BITS-1:0] one = {{(L_BITS - 1){1'b0}}, 1'b1} << sh;
            assign term      = !(a_bit & w_bit) ? {L_BITS{1'b0}} : (a_top ^ w_top) ? -one : one;
            assign last_beat = (beat_ja_in == a_msb) && (beat_jw_in == w_msb);
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
        if (SERIAL_BOTH != 0 && SERIAL_BOTH != 1) begin : g_param_error_1
`ifdef VERILATOR
            $error("lowbit_serial_pe: parameter SERIAL_BOTH = %0d must be 0 (Stripes) or 1 (Loom)", SERIAL_BOTH);
`else
            lowbit_param_error__SERIAL_BOTH_must_be_0_or_1 stop ();
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
