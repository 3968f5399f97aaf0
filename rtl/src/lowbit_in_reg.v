// lowbit_in_reg: a one-beat input register of the GEMM tops (Verilog-2005). It takes a beat on a rising edge with
// in_valid & in_ready and holds it (full, data) until the top uses it up (take). in_ready = !full || take: it
// depends only on the register and the top's state, never on in_valid, and a beat may enter on the edge the
// previous one is used up (full throughput). rst_n is synchronous, active low (it empties the register).
`default_nettype none
module lowbit_in_reg #(
    parameter WIDTH = 32
) (
    input  wire             clk,
    input  wire             rst_n,
    input  wire             in_valid,
    output wire             in_ready,
    input  wire [WIDTH-1:0] in_data,
    input  wire             take,      // the held beat is used up this cycle
    output reg              full,
    output reg  [WIDTH-1:0] data
);
    assign in_ready = !full || take;

    always @(posedge clk) begin
        if (!rst_n) begin
            full <= 1'b0;
        end else if (in_valid && in_ready) begin
            data <= in_data;
            full <= 1'b1;
        end else if (take) begin
            full <= 1'b0;
        end
    end

    // ---- parameter checks, at elaboration: Verilator reports the message ($error in a generate block); other tools
    // stop on the missing module whose name states the rule (tests/rtl/test_params.py drives every check) --------
    generate
        if (WIDTH < 1) begin : g_param_error_0
`ifdef VERILATOR
            $error("lowbit_in_reg: parameter WIDTH = %0d must be >= 1", WIDTH);
`else
            lowbit_param_error__WIDTH_must_be_at_least_1 stop ();
`endif
        end
    endgenerate
endmodule
`default_nettype wire
