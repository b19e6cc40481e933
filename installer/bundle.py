"""What the frozen app carries besides code: one list, read by installer/dermaseg.spec and checked
by tests/test_installer_bundle.py against the repository.

Each entry is (source relative to the repository root, folder inside the app). Inside the app the
folders sit under ``sys._MEIPASS`` (PyInstaller's ``_internal``), where ``dermaseg_app.paths`` looks
for ``resources/`` and ``models/`` first.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The shipped models (the default SLSNet and the 1.8 MB Mobile DeepLab to compare with): a weights
# file carries its config and card in the header; the .md beside it is the human-readable card.
# models/resume/ (training resume states) is not shipped.
MODEL_FILES = ["models/slsnet_isic2017.safetensors", "models/slsnet_isic2017.md",
               "models/mobile_deeplab_isic2017.safetensors", "models/mobile_deeplab_isic2017.md"]

DATA: list[tuple[str, str]] = [
    ("resources/samples", "resources/samples"),   # the CC0 sample images the app opens first
    ("resources/replay", "resources/replay"),     # the CC0 replay set fine-tuning mixes in
    ("resources/icons", "resources/icons"),       # the window and desktop icon
    *[(f, "models") for f in MODEL_FILES],
    ("dermaseg_app/ml/csrc", "dermaseg_app/ml/csrc"),  # the kernel source (its hash names the build)
]

# Resources that must NOT travel (tests check they are not in DATA).
NOT_SHIPPED = ["models/resume", "tests", "benchmarks", "runs"]

# Python packages the app does not use that PyInstaller's hooks would otherwise pull in.
EXCLUDES = [
    "tkinter", "matplotlib", "IPython", "jupyter", "notebook", "pytest", "_pytest", "pytestqt",
    "torch.utils.tensorboard", "tensorboard", "torchvision",
    "PySide6.QtNetwork", "PySide6.QtQml", "PySide6.QtQuick", "PySide6.QtQuickWidgets", "PySide6.QtSql",
    "PySide6.QtTest", "PySide6.QtXml", "PySide6.QtDBus", "PySide6.QtConcurrent", "PySide6.QtHelp",
    "PySide6.QtDesigner", "PySide6.QtUiTools", "PySide6.QtPrintSupport",
    "PySide6.QtSvg", "PySide6.QtSvgWidgets",  # QtOpenGL stays: pyqtgraph imports it
    "pyqtgraph.opengl", "pyqtgraph.examples", "pyqtgraph.jupyter",
    "openvino", "onnxruntime", "onnx", "onnxscript",  # optional runtimes: see installer/README.md
    # torch's hook collects every torch submodule, and with them what torch.compile's code
    # generation, torch.distributed.checkpoint and torch.onnx's new exporter import: nothing the
    # app runs imports these (the window, predict, info and a fine-tune step, tested with them
    # blocked). The app never imports scipy or scikit-image (its measurements use OpenCV).
    "scipy", "skimage", "networkx", "jinja2", "markupsafe", "pygments", "rich", "fsspec", "ml_dtypes",
    "onnx_ir", "google.protobuf",
    # Pillow's AVIF, WebP, font, colour-management and Tk modules (and their libavif, libwebp,
    # freetype, harfbuzz, lcms2): the app reads JPEG, PNG, BMP and TIFF only (core.imageio)
    "PIL._avif", "PIL.AvifImagePlugin", "PIL._webp", "PIL.WebPImagePlugin", "PIL._imagingft", "PIL.ImageFont",
    "PIL._imagingcms", "PIL.ImageCms", "PIL._imagingtk", "PIL.ImageTk", "PIL.ImageQt",
]

# torch's Python code travels compiled only (in the PYZ archive), not also as .py files beside it
# (PyInstaller's torch hook keeps both, 44 MB of sources, for TorchScript's and torch.compile's
# source reading, which the app does not use), except the modules that read their own source at
# import: the config modules (torch.utils._config_module reads their comments), which
# `import torch._dynamo` (torch.optim's first step, a custom op's first call) imports, and the
# modules declaring TorchScript overloads (@_overload reads their bodies at import: without the
# source every command warns "Unable to retrieve source for @torch.jit._overload function").
TORCH_SOURCES_KEPT = [
    "torch.nn.functional", "torch.functional", "torch.nn.modules.rnn",
    "torch._dynamo.config", "torch._export.config", "torch._functorch.config", "torch._inductor.config",
    "torch._inductor.config_comms", "torch.compiler.config", "torch.distributed.config",
    "torch.fx.experimental._config", "torch.utils._config_module", "torch.utils.serialization.config",
]

# Shared libraries left out of the CPU build (file-name prefixes): CUDA, and Qt modules nothing
# imports (Qt's own plugins pull some in).
BINARY_EXCLUDE_PREFIXES = [
    "libcuda", "libcudnn", "libcublas", "libcufft", "libcurand", "libcusolver", "libcusparse",
    "libnccl", "libnvrtc", "libnvToolsExt", "libnvJitLink", "libtriton",
    "libQt6Qml", "libQt6Quick", "libQt6Network", "libQt6Pdf", "libQt6VirtualKeyboard",
    "libQt6Sql", "libQt6Test", "libQt6Designer",
]

# Paths inside the app (prefixes) that are for building or testing the libraries, not for running
# the app: torch's C++ test programs and headers, PySide6's binding-generator files, Qt's QML.
DROPPED_PATHS = ["torch/test/", "torch/include/", "torch/share/cmake/", "torch/testing/_internal/data/",
                 "PySide6/include/", "PySide6/typesystems/", "PySide6/glue/", "PySide6/Qt/qml/",
                 # Qt's own translations: the app installs no QTranslator (its texts are English)
                 "PySide6/Qt/translations/",
                 # torch's test libraries (TorchScript and AOTInductor test backends)
                 "torch/lib/libtorchbind_test.so", "torch/lib/libjitbackend_test.so",
                 "torch/lib/libbackend_with_compiler.so", "torch/lib/libaoti_custom_ops.so",
                 "torch/fx/passes/tests/"]

# Shared libraries whose static symbol table (.symtab/.strtab: names for debuggers, never read by
# the loader) is dropped by installer/elf_trim.py, which keeps every mapped byte as it is and
# leaves a file alone where it cannot (all of libtorch_cpu's 85 MB, libpython's 17, ...). Every
# binary is trimmed except these (prefixes): auditwheel's grafted libraries (numpy.libs holds the
# OpenBLAS that strip broke once; elf_trim would refuse them anyway, but they are not even read).
TRIM_SYMBOLS = True
NOT_TRIMMED = ["numpy.libs/", "scipy.libs/", "opencv_python_headless.libs/", "pillow.libs/", "shapely.libs/"]

# Qt plugins kept (folder/name prefixes under PySide6/Qt/plugins); everything else is dropped.
QT_PLUGINS_KEPT = ["platforms/libqxcb", "platforms/libqoffscreen", "platforms/libqwayland",
                   "platforms/qwindows", "platforms/libqcocoa", "platforms/libqminimal",
                   "imageformats/", "xcbglintegrations/", "platformthemes/", "iconengines/",
                   "styles/", "wayland-"]


def data_paths() -> list[Path]:
    """The absolute source paths of DATA."""
    return [ROOT / src for src, _ in DATA]
