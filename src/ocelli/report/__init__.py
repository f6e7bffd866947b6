"""Reports people can look at: HTML pages with images, plots and tables."""

from ocelli.report.html import bar_chart_png, html_table, image_data_url, write_run_report

__all__ = ["bar_chart_png", "html_table", "image_data_url", "write_run_report"]
