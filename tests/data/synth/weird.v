module weird(input clk, input rst, input arst, input s, input r, input en, input [3:0] d, output reg [3:0] q1 = 4'h5, output reg [3:0] q3 = 4'h3, output reg q5, output reg l, output reg q6);
  always @(posedge clk) if (rst) q1 <= 0; else if (en) q1 <= d;
  always @(posedge clk or posedge arst) if (arst) q3 <= 4'b1010; else q3 <= d + q3;
  always @(posedge clk or posedge s or posedge r) if (r) q5 <= 0; else if (s) q5 <= 1; else q5 <= d[0];
  always @* if (en) l = d[1];
  always @(posedge clk or posedge arst) if (arst) q6 <= d[2]; else q6 <= d[3];
endmodule
