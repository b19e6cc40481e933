"""The application layer: what the window does, without Qt (issue 13).

``corrections``  the open folder's corrections by image, with their save / leave / recover policy
``finetune``     the fine-tuning job the Training tab runs (a generator a GUI worker drives)
``prediction``   the folder's background prediction, nearest the current image first
``projects``     one ``core.project.Project`` per opened folder
``settings``     the window's settings file

Nothing here imports Qt (``tests/test_architecture.py``); it is unit-tested without a window
(``tests/test_app_*.py``).
"""
