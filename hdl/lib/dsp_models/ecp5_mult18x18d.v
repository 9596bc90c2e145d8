// Behavioural simulation model of the Lattice ECP5 sysDSP primitive MULT18X18D, for the
// options convgen uses. yosys ships MULT18X18D only as a blackbox
// (share/lattice/cells_bb_ecp5.v), so this model is written from these sources:
//
//   - Lattice's sysDSP documentation: the MULT18X18D primitive (TN1267 "ECP5 and ECP5-5G
//     sysDSP Usage Guide"; its text was not at hand when this was written, so the register
//     scheme was taken from the same sysDSP description in the LatticeECP2/M data sheet and
//     LatticeECP3 TN1182): input (A, B), pipeline and output registers, each selecting a
//     clock, a clock enable and a reset from CLK0..3 / CE0..3 / RST0..3 with REG_<reg>_CLK /
//     _CE / _RST ("NONE" bypasses the register); SIGNEDA / SIGNEDB give the signedness of each
//     18-bit operand, and they are registered together with their operand.
//   - the port and parameter list and the defaults of yosys' blackbox (cells_bb_ecp5.v).
//   - nextpnr-ecp5 (ecp5/pack.cc, arch.cc, bitstream.cc): a registered MULT18X18D is timed
//     against CLK0 only ("if this port is clocked at all, it must be clocked from CLK0");
//     CLKn_DIV defaults to "ENABLED" and RESETMODE to "SYNC" in the bitstream.
//   - the behaviour of Lattice's own ECP5 simulation library cell, read (not copied) to settle
//     details TN1267 leaves implicit: with CLKn_DIV = "ENABLED" each register loads once per
//     rising edge of CLKn; a synchronous reset has priority over the clock enable; the
//     product is the 36-bit product of the operands sign- or zero-extended by SIGNEDA/SIGNEDB;
//     SIGNEDP = SIGNEDA | SIGNEDB, delayed like the product up to the pipeline register.
//
// Modelled (anything else stops the simulation at time 0 with $fatal):
//   REG_INPUTA_CLK, REG_INPUTB_CLK, REG_PIPELINE_CLK, REG_OUTPUT_CLK : "NONE" or "CLK0"
//   REG_*_CE : "CE0"        REG_*_RST : "RST0"       RESETMODE : "SYNC"
//   CLK0_DIV : "ENABLED"    SOURCEA = SOURCEB = 0 (operands from A and B, not the shift chain)
//   MULT_BYPASS : "DISABLED"   SOURCEB_MODE, HIGHSPEED_CLK, CAS_MATCH_REG: defaults, unused
//   GSR : registers start at 0 (the global set/reset at configuration)
// Not modelled: the C input and its register, the shift chains (SRIA/SRIB in; SROA, SROB,
// ROC out are driven with the operand after its input register, ROC with C), CLK1..3, CE1..3,
// RST1..3, asynchronous reset, the clock divider in DISABLED mode.
//
// Checked against plain multiplication in tests/test_vendor_dsp.py (every register option
// above, full 18-bit random operands and signedness, and all int8 x int8 pairs through
// convgen.hdl.lib.dsp), on Icarus and Verilator.
`default_nettype none
module MULT18X18D(
    A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0, B17, B16,
    B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0, C17, C16, C15, C14,
    C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0, SIGNEDA, SIGNEDB, SOURCEA,
    SOURCEB, CLK3, CLK2, CLK1, CLK0, CE3, CE2, CE1, CE0, RST3, RST2, RST1, RST0, SRIA17, SRIA16,
    SRIA15, SRIA14, SRIA13, SRIA12, SRIA11, SRIA10, SRIA9, SRIA8, SRIA7, SRIA6, SRIA5, SRIA4,
    SRIA3, SRIA2, SRIA1, SRIA0, SRIB17, SRIB16, SRIB15, SRIB14, SRIB13, SRIB12, SRIB11, SRIB10,
    SRIB9, SRIB8, SRIB7, SRIB6, SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0, SROA17, SROA16, SROA15,
    SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8, SROA7, SROA6, SROA5, SROA4, SROA3,
    SROA2, SROA1, SROA0, SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9,
    SROB8, SROB7, SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0, ROA17, ROA16, ROA15, ROA14,
    ROA13, ROA12, ROA11, ROA10, ROA9, ROA8, ROA7, ROA6, ROA5, ROA4, ROA3, ROA2, ROA1, ROA0,
    ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8, ROB7, ROB6, ROB5, ROB4,
    ROB3, ROB2, ROB1, ROB0, ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8,
    ROC7, ROC6, ROC5, ROC4, ROC3, ROC2, ROC1, ROC0, P35, P34, P33, P32, P31, P30, P29, P28, P27,
    P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8,
    P7, P6, P5, P4, P3, P2, P1, P0, SIGNEDP);
    input A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0;
    input B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0;
    input C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0;
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB;
    input CLK3, CLK2, CLK1, CLK0;
    input CE3, CE2, CE1, CE0;
    input RST3, RST2, RST1, RST0;
    input SRIA17, SRIA16, SRIA15, SRIA14, SRIA13, SRIA12, SRIA11, SRIA10, SRIA9, SRIA8, SRIA7, SRIA6,
          SRIA5, SRIA4, SRIA3, SRIA2, SRIA1, SRIA0;
    input SRIB17, SRIB16, SRIB15, SRIB14, SRIB13, SRIB12, SRIB11, SRIB10, SRIB9, SRIB8, SRIB7, SRIB6,
          SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0;
    output SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8, SROA7, SROA6,
           SROA5, SROA4, SROA3, SROA2, SROA1, SROA0;
    output SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8, SROB7, SROB6,
           SROB5, SROB4, SROB3, SROB2, SROB1, SROB0;
    output ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8, ROA7, ROA6, ROA5, ROA4,
           ROA3, ROA2, ROA1, ROA0;
    output ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8, ROB7, ROB6, ROB5, ROB4,
           ROB3, ROB2, ROB1, ROB0;
    output ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8, ROC7, ROC6, ROC5, ROC4,
           ROC3, ROC2, ROC1, ROC0;
    output P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17,
           P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0;
    output SIGNEDP;

    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_INPUTC_CE = "CE0";
    parameter REG_INPUTC_RST = "RST0";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";

    localparam IN_A = REG_INPUTA_CLK == "CLK0";
    localparam IN_B = REG_INPUTB_CLK == "CLK0";
    localparam PIPE = REG_PIPELINE_CLK == "CLK0";
    localparam OUTR = REG_OUTPUT_CLK == "CLK0";

    initial begin
        if (!(REG_INPUTA_CLK == "NONE" || IN_A) || !(REG_INPUTB_CLK == "NONE" || IN_B) ||
            !(REG_PIPELINE_CLK == "NONE" || PIPE) || !(REG_OUTPUT_CLK == "NONE" || OUTR))
            $fatal(1, "MULT18X18D model: REG_*_CLK must be NONE or CLK0");
        if (REG_INPUTA_CE != "CE0" || REG_INPUTB_CE != "CE0" || REG_PIPELINE_CE != "CE0" ||
            REG_OUTPUT_CE != "CE0")
            $fatal(1, "MULT18X18D model: REG_*_CE must be CE0");
        if (REG_INPUTA_RST != "RST0" || REG_INPUTB_RST != "RST0" || REG_PIPELINE_RST != "RST0" ||
            REG_OUTPUT_RST != "RST0")
            $fatal(1, "MULT18X18D model: REG_*_RST must be RST0");
        if (RESETMODE != "SYNC" || CLK0_DIV != "ENABLED" || MULT_BYPASS != "DISABLED")
            $fatal(1, "MULT18X18D model: needs RESETMODE SYNC, CLK0_DIV ENABLED, MULT_BYPASS DISABLED");
    end

    wire [17:0] a_in = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b_in = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    wire [17:0] c_in = {C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0};

    // input registers: operand and its signedness flag together
    reg [17:0] a_reg = 18'd0, b_reg = 18'd0;
    reg sa_reg = 1'b0, sb_reg = 1'b0;
    always @(posedge CLK0) begin
        if (RST0) begin
            a_reg <= 18'd0;
            sa_reg <= 1'b0;
        end else if (CE0) begin
            a_reg <= a_in;
            sa_reg <= SIGNEDA;
        end
        if (RST0) begin
            b_reg <= 18'd0;
            sb_reg <= 1'b0;
        end else if (CE0) begin
            b_reg <= b_in;
            sb_reg <= SIGNEDB;
        end
    end
    wire [17:0] a_op = IN_A ? a_reg : a_in;
    wire [17:0] b_op = IN_B ? b_reg : b_in;
    wire sa = IN_A ? sa_reg : SIGNEDA;
    wire sb = IN_B ? sb_reg : SIGNEDB;

    // the 18x18 multiplier: each operand sign- or zero-extended to 36 bits
    wire [35:0] a_ext = {{18{sa & a_op[17]}}, a_op};
    wire [35:0] b_ext = {{18{sb & b_op[17]}}, b_op};
    wire [35:0] product = a_ext * b_ext;

    // pipeline register
    reg [35:0] p_pipe = 36'd0;
    reg s_pipe = 1'b0;
    always @(posedge CLK0) begin
        if (RST0) begin
            p_pipe <= 36'd0;
            s_pipe <= 1'b0;
        end else if (CE0) begin
            p_pipe <= product;
            s_pipe <= sa | sb;
        end
    end
    wire [35:0] p_mid = PIPE ? p_pipe : product;

    // output register
    reg [35:0] p_out = 36'd0;
    always @(posedge CLK0) begin
        if (RST0)
            p_out <= 36'd0;
        else if (CE0)
            p_out <= p_mid;
    end
    wire [35:0] p = OUTR ? p_out : p_mid;

    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18,
            P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = p;
    assign SIGNEDP = PIPE ? s_pipe : (sa | sb);
    assign {ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8, ROA7, ROA6, ROA5, ROA4,
            ROA3, ROA2, ROA1, ROA0} = a_op;
    assign {SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8, SROA7, SROA6,
            SROA5, SROA4, SROA3, SROA2, SROA1, SROA0} = a_op;
    assign {ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8, ROB7, ROB6, ROB5, ROB4,
            ROB3, ROB2, ROB1, ROB0} = b_op;
    assign {SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8, SROB7, SROB6,
            SROB5, SROB4, SROB3, SROB2, SROB1, SROB0} = b_op;
    assign {ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8, ROC7, ROC6, ROC5, ROC4,
            ROC3, ROC2, ROC1, ROC0} = c_in;
endmodule
`default_nettype wire
