module mem(input clk, input we, input [8:0] wa, input [8:0] ra, input [15:0] wd, output reg [15:0] rd, input [3:0] sa, input [3:0] sb, output [3:0] so);
  reg [15:0] m [0:511];
  always @(posedge clk) begin if (we) m[wa] <= wd; rd <= m[ra]; end
  reg [3:0] s [0:15];
  always @(posedge clk) if (we) s[sa] <= wd[3:0];
  assign so = s[sb];
endmodule
