"""Grader tables: (gold, prediction, expected) rows, commented. Every mis-grade found in the wild
becomes a new row here, in a section named after where it was found.

``ANSWER_CASES`` compare extracted answers (``answers_equal``); ``RESPONSE_CASES`` grade whole
responses (``grade``: extraction + comparison).
"""

from __future__ import annotations

# --- the official code's substring grading (METHOD §7): "2" is "found" in \boxed{12} ------------
SUBSTRING_TRAPS = [
    ("2", "12", False),  # the official bug: gold 2 accepted for 12
    ("12", "2", False),
    ("1", "11", False),
    ("90", "900", False),
    ("900", "90", False),
    ("36", "3.6", False),
    ("100", "10", False),
    ("5", "\\sqrt{5}", False),  # the digit is there, the value is not
    ("5", "25", False),
    ("-4", "4", False),  # sign dropped
    ("4", "-4", False),
    ("70", "70 + 1", False),
    ("3", "(3, 4)", False),  # a tuple containing the gold
    ("11", "111", False),
]

# --- numbers: formats the official data and models use ------------------------------------------
NUMBERS = [
    ("142", "142.0", True),  # AMC stores 142.0 for 142
    ("142", "142.", True),
    ("0.15", ".15", True),
    ("1.25", "1.250", True),
    ("10080", "10,080", True),  # thousands separator
    ("10,\\!080", "10080", True),  # LaTeX thousands separator in the gold (MATH500)
    ("11,\\! 111,\\! 111,\\! 100", "11111111100", True),
    ("58,500", "58{,}500", True),
    ("\\$32,\\!348", "32348", True),  # dollars
    ("\\$18.90", "18.9", True),
    ("2775498395670", "2775498395670.0", True),
    ("11123222133313121223113233211", "11123222133313121223113233212", False),  # beyond float precision
    ("100000000000000001", "100000000000000000", False),
    ("3.21", "3.2100001", False),
    ("142", "141.99999999", False),  # no float rounding between plain numbers
    ("0", "0.0", True),
    ("-1", "-1.0", True),
    (".0000672", "6.72\\times 10^{-5}", True),
    ("25", "25\\%", True),
]

# --- fractions, mixed numbers, radicals ---------------------------------------------------------
FRACTIONS = [
    ("\\dfrac{17}{50}", "\\frac{17}{50}", True),
    ("\\dfrac{17}{50}", "0.34", True),
    ("\\frac 34", "3/4", True),
    ("\\frac9{19}", "\\frac{9}{19}", True),
    ("\\frac{1}{2}", "0.5", True),
    ("\\frac{1}{3}", "0.333333", True),  # math-verify rounds floats to 6 decimals
    ("\\frac{1}{3}", "0.33", False),
    ("\\frac{2}{3}", "\\frac{3}{2}", False),
    ("1\\frac{4}{5}", "\\frac{9}{5}", True),  # a mixed number
    ("1\\frac{4}{5}", "\\frac45", False),
    ("137 \\frac{1}{2}", "137.5", True),
    ("2\\sqrt{5}", "\\sqrt{20}", True),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", True),
    ("11\\sqrt2", "11 \\sqrt{2}", True),
    ("\\pi", "3.14", False),
    ("7\\pi", "7 \\pi", True),
]

# --- wrappers the grader must see through -------------------------------------------------------
WRAPPERS = [
    ("70", "70^\\circ", True),  # degrees
    ("336^\\circ", "336", True),
    ("30^\\circ", "30^{\\circ}", True),
    ("90^\\circ", "90 degrees", True),
    ("5.4 \\text{ cents}", "5.4", True),  # units in \text{}
    ("15\\mbox{ cm}^2", "15", True),
    ("864 \\mbox{ inches}^2", "864 \\text{ in}^2", True),
    ("\\frac{270}7\\text{ degrees}", "\\frac{270}{7}", True),
    ("x=5", "5", True),  # an assignment around the value
    ("5", "x = 5", True),
    ("y = 2x + 3", "2x+3", True),
    ("y = 2x + 3", "2x-3", False),
    ("x \\in [-2,7]", "[-2,7]", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})", True),  # \left( ... \right)
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{3})", False),
    ("42", "$42$", True),
    ("42", "\\displaystyle 42", True),
]

# --- text answers, choices, bases ---------------------------------------------------------------
TEXT = [
    ("\\text{(B)}", "B", True),  # multiple choice
    ("\\text{(B)}", "(B)", True),
    ("\\text{(B)}", "\\textbf{(B)}", True),
    ("\\text{(B)}", "C", False),
    ("\\text{Evelyn}", "Evelyn", True),
    ("\\text{Evelyn}", "\\text{Navin}", False),
    ("\\text{even}", "Even", True),
    ("\\text{even}", "odd", False),
    ("\\text{east}", "\\text{ East }", True),
    ("12", "twelve", False),
    ("204_5", "204_{5}", True),  # base subscripts
    ("204_5", "205_5", False),
]

# --- structures: sets, tuples, intervals, matrices, expressions ---------------------------------
STRUCTURES = [
    ("1,-2", "-2, 1", True),  # an unordered list of solutions
    ("3, 5, 7", "7, 5, 3", True),
    ("3, 5, 7", "3, 5", False),
    ("1 \\pm \\sqrt{19}", "1+\\sqrt{19}, 1-\\sqrt{19}", True),
    ("(-\\infty, 0]", "(-\\infty, 0)", False),  # endpoint included or not
    ("(2,12) \\cup (12,102)", "(2,102)", False),
    ("(6,31,-1)", "(6, 31, -1)", True),
    ("(6,31,-1)", "(6, -1, 31)", False),  # a tuple is ordered
    ("\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}",
     "\\begin{pmatrix} -\\frac13 \\\\ \\frac23 \\\\ \\frac53 \\end{pmatrix}", True),
    ("\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
     "\\begin{pmatrix} -1 & 0 \\\\ 0 & 1 \\end{pmatrix}", False),
    ("6 - 5i", "6-5i", True),
    ("-2 + 7i", "7i - 2", True),
    ("1+2i", "1-2i", False),
    ("(a+5)(b+2)", "(b+2)(a+5)", True),
    ("6r^2-4r-24", "2(3r^2-2r-12)", True),
    ("x^3+3x-6", "x^3+3x-7", False),
    ("p - q", "-q + p", True),
    ("2k+2", "2(k+1)", True),
    ("\\cot x", "\\frac{\\cos x}{\\sin x}", True),
]

# --- degenerate predictions ---------------------------------------------------------------------
DEGENERATE = [
    ("0", "", False),  # empty box
    ("0", " ", False),
    ("1", "9^{9^{9}}", False),  # refused: a tower sympy would evaluate for minutes
]

ANSWER_CASES = SUBSTRING_TRAPS + NUMBERS + FRACTIONS + WRAPPERS + TEXT + STRUCTURES + DEGENERATE

# --- whole responses: which \boxed{} counts -----------------------------------------------------
RESPONSE_CASES = [
    # (response, gold, expected)
    ("<think>\nIt is 12.\n</think>\n<answer>\nThe answer is \\boxed{12}\n</answer>", "12", True),
    ("<think>\n\\boxed{12} is tempting\n</think>\n<answer>\n\\boxed{13}\n</answer>", "12", False),  # thinking
    ("<think>\n\\boxed{13} is tempting\n</think>\n<answer>\n\\boxed{12}\n</answer>", "12", True),
    # a number only in an executor output does not count
    ("<code>\nprint(12)\n</code>\n<executor>\n12\n</executor>\n<think>\nso?\n</think>", "12", False),
    ("<think>\nok\n</think>\n<executor>\n\\boxed{12}\n</executor>\nno box here", "12", False),
    ("<think>\nok\n</think>\nThe answer is \\boxed{12}.", "12", True),  # after </think>
    ("\\boxed{1} then \\boxed{12}", "12", True),  # no tags: the last box
    ("\\boxed{12} then \\boxed{1}", "12", False),
    ("<answer>\n\\boxed{12}\n</answer>", "2", False),  # substring trap on a response
    ("<answer>\n\\boxed{\\frac{1}{2}}\n</answer>", 0.5, True),  # float gold
    ("<answer>\n\\boxed{142}\n</answer>", 142.0, True),  # AMC gold
    ("The answer is 12.", "12", False),  # no \boxed{}: no answer
    ("", "12", False),
]
