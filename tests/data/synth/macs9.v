module mac(input clk, input rst,
           input signed [7:0] a, input signed [7:0] b,
           output reg signed [31:0] acc);
  always @(posedge clk)
    if (rst) acc <= 0;
    else acc <= acc + a * b;
endmodule
module macs9(input clk, input rst, input [71:0] a, input [71:0] b, output [287:0] acc);
  mac m0(.clk(clk), .rst(rst), .a(a[7:0]), .b(b[7:0]), .acc(acc[31:0]));
  mac m1(.clk(clk), .rst(rst), .a(a[15:8]), .b(b[15:8]), .acc(acc[63:32]));
  mac m2(.clk(clk), .rst(rst), .a(a[23:16]), .b(b[23:16]), .acc(acc[95:64]));
  mac m3(.clk(clk), .rst(rst), .a(a[31:24]), .b(b[31:24]), .acc(acc[127:96]));
  mac m4(.clk(clk), .rst(rst), .a(a[39:32]), .b(b[39:32]), .acc(acc[159:128]));
  mac m5(.clk(clk), .rst(rst), .a(a[47:40]), .b(b[47:40]), .acc(acc[191:160]));
  mac m6(.clk(clk), .rst(rst), .a(a[55:48]), .b(b[55:48]), .acc(acc[223:192]));
  mac m7(.clk(clk), .rst(rst), .a(a[63:56]), .b(b[63:56]), .acc(acc[255:224]));
  mac m8(.clk(clk), .rst(rst), .a(a[71:64]), .b(b[71:64]), .acc(acc[287:256]));
endmodule
