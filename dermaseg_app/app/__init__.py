"""The application layer: what the window does, without Qt (issue 13).

The corrections of the open folder with their save / leave / recover policy (``corrections``),
the fine-tuning job the Training tab runs (``finetune``), and the window's settings file
(``settings``). Nothing here imports Qt; it is unit-tested without a window.
"""
