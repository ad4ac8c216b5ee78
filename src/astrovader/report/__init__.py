"""`astrovader report`: every table and figure of the paper's sections 4-5 for one trained run,
plus what the paper could not measure (scores against known classes, the spread of the choice
of K), as PNG files and one self-contained HTML page (figures embedded as data URIs).

    build_report("runs/gz1", "runs/gz1/report", ReportOptions(votes="gz2_hart16.csv", subset="0,3,5"))

    page.py       the HTML page: sections, tables, notes, embedded figures
    context.py    ReportOptions, and what the sections share while the report is built
    sections.py   the sections, in page order
    build.py      build_report: runs the sections, writes the PNGs, summary.json and report.html
"""

from astrovader.report.build import build_report
from astrovader.report.context import ReportOptions

__all__ = ["ReportOptions", "build_report"]
