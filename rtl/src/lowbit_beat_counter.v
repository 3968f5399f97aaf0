// lowbit_beat_counter: the beats of one streamed element on a bit-serial array (Verilog-2005). An element takes
// a_bits beats (SERIAL = 0, Stripes: ja = 0 .. a_bits-1), a_bits * w_bits (1, Loom: ja fastest, then jw) or w_bits
// (2, Stripes serializing the stationary operand: jw = 0 .. w_bits-1, ja = 0); lowbit_serial_pe's SERIAL codes.
// On every edge with step = 1 the counter moves to the next beat; last_beat marks the element's last. clear (or
// rst_n low) returns it to the first beat. Widths are run-time inputs, 1..MAX_BITS.
`default_nettype none
module lowbit_beat_counter #(
    parameter MAX_BITS = 8,   // the widest run-time width
    parameter SERIAL   = 0    // bits counted: 0 a_bits, 1 a_bits x w_bits, 2 w_bits
) (
    clk, rst_n, clear, step, a_bits, w_bits, ja, jw, last_beat
);
    localparam NB = $clog2(MAX_BITS + 1);                   // a width, 1..MAX_BITS
    localparam IB = (MAX_BITS > 1) ? $clog2(MAX_BITS) : 1;  // a bit index

    input  wire          clk;
    input  wire          rst_n;
    input  wire          clear;
    input  wire          step;
    /* verilator lint_off UNUSEDSIGNAL */  // SERIAL 0 counts a_bits only, 2 w_bits only
    input  wire [NB-1:0] a_bits;
    input  wire [NB-1:0] w_bits;
    /* verilator lint_on UNUSEDSIGNAL */
    output reg  [IB-1:0] ja;
    output reg  [IB-1:0] jw;
    output wire          last_beat;

    wire [NB-1:0] a_top = a_bits - 1'b1;
    wire [NB-1:0] w_top = w_bits - 1'b1;
    /* verilator lint_off WIDTHEXPAND */
    wire ja_end = (SERIAL == 2) || (ja == a_top);
    wire jw_end = (SERIAL == 0) || (jw == w_top);
    /* verilator lint_on WIDTHEXPAND */
    assign last_beat = ja_end && jw_end;

    always @(posedge clk) begin
        if (!rst_n || clear) begin
            ja <= {IB{1'b0}};
            jw <= {IB{1'b0}};
        end else if (step) begin
            if (last_beat) begin
                ja <= {IB{1'b0}};
                jw <= {IB{1'b0}};
            end else if (ja_end) begin
                ja <= {IB{1'b0}};
                jw <= jw + 1'b1;
            end else begin
                ja <= ja + 1'b1;
            end
        end
    end

    // ---- parameter checks, at elaboration: Verilator reports the message ($error in a generate block); other tools
    // stop on the missing module whose name states the rule (tests/rtl/test_params.py drives every check) --------
    generate
        if (MAX_BITS < 1) begin : g_param_error_0
`ifdef VERILATOR
            $error("lowbit_beat_counter: parameter MAX_BITS = %0d must be >= 1", MAX_BITS);
`else
            lowbit_param_error__MAX_BITS_must_be_at_least_1 stop ();
`endif
        end
        if (SERIAL < 0 || SERIAL > 2) begin : g_param_error_1
`ifdef VERILATOR
            $error("lowbit_beat_counter: parameter SERIAL = %0d must be 0 (Stripes), 1 (Loom) or 2 (stationary bits)",
                   SERIAL);
`else
            lowbit_param_error__SERIAL_must_be_0_to_2 stop ();
`endif
        end
    endgenerate
endmodule
`default_nettype wire
