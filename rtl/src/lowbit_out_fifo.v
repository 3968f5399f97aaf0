// lowbit_out_fifo: the output FIFO of the GEMM tops (Verilog-2005): DEPTH entries of WIDTH bits, valid/ready on the
// read side. push writes push_data (the writer checks `full` first); a beat leaves on a rising edge with
// out_valid & out_ready. The read side is registered state only (out_valid = not empty, out_data = the head), so
// it never depends on out_ready. rst_n is synchronous, active low (it empties the FIFO).
`default_nettype none
module lowbit_out_fifo #(
    parameter WIDTH = 32,  // bits per entry
    parameter DEPTH = 2    // entries (power of two, >= 2)
) (
    input  wire             clk,
    input  wire             rst_n,
    input  wire             push,
    input  wire [WIDTH-1:0] push_data,
    input  wire             out_ready,
    output wire             out_valid,
    output wire [WIDTH-1:0] out_data,
    output wire             full
);
    localparam PTR_BITS = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    localparam integer DEPTH_I = DEPTH;
    localparam [PTR_BITS:0] FULL = DEPTH_I[PTR_BITS:0];

    reg [WIDTH-1:0]    mem [0:DEPTH-1];
    reg [PTR_BITS-1:0] wr_ptr, rd_ptr;
    reg [PTR_BITS:0]   count;
    wire pop = out_valid && out_ready;

    assign full      = (count == FULL);
    assign out_valid = (count != {(PTR_BITS+1){1'b0}});
    assign out_data  = mem[rd_ptr];

    always @(posedge clk) begin
        if (push) mem[wr_ptr] <= push_data;
    end

    always @(posedge clk) begin
        if (!rst_n) begin
            wr_ptr <= {PTR_BITS{1'b0}};
            rd_ptr <= {PTR_BITS{1'b0}};
            count  <= {(PTR_BITS+1){1'b0}};
        end else begin
            if (push) wr_ptr <= wr_ptr + 1'b1;
            if (pop)  rd_ptr <= rd_ptr + 1'b1;
            if (push && !pop)      count <= count + 1'b1;
            else if (pop && !push) count <= count - 1'b1;
        end
    end

    // ---- parameter checks, at elaboration: Verilator reports the message ($error in a generate block); other tools
    // stop on the missing module whose name states the rule (tests/rtl/test_params.py drives every check) --------
    generate
        if (WIDTH < 1) begin : g_param_error_0
`ifdef VERILATOR
            $error("lowbit_out_fifo: parameter WIDTH = %0d must be >= 1", WIDTH);
`else
            lowbit_param_error__WIDTH_must_be_at_least_1 stop ();
`endif
        end
        if (DEPTH < 2 || ((DEPTH) & ((DEPTH) - 1)) != 0) begin : g_param_error_1
`ifdef VERILATOR
            $error("lowbit_out_fifo: parameter DEPTH = %0d must be a power of two >= 2", DEPTH);
`else
            lowbit_param_error__DEPTH_must_be_a_power_of_two_at_least_2 stop ();
`endif
        end
    endgenerate
endmodule
`default_nettype wire
