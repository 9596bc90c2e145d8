// Independent reference for the formal check: a direct 3-tap FIR with 2 outputs, written by
// hand, with no Winograd in it. The widths come from macros (read_verilog -DDW=.. -DGW=..
// -DYW=..). Products and sums are formed at 48 bits, so nothing can wrap for data and weight
// widths up to 16.
module direct_fir3 (
    input  signed [`DW-1:0] d0, d1, d2, d3,
    input  signed [`GW-1:0] g0, g1, g2,
    output signed [`YW-1:0] y0, y1
);
    wire signed [47:0] e0 = d0, e1 = d1, e2 = d2, e3 = d3;
    wire signed [47:0] h0 = g0, h1 = g1, h2 = g2;
    wire signed [47:0] s0 = e0 * h0 + e1 * h1 + e2 * h2;
    wire signed [47:0] s1 = e1 * h0 + e2 * h1 + e3 * h2;
    assign y0 = s0[`YW-1:0];
    assign y1 = s1[`YW-1:0];
endmodule
