"""The review projects of what is open: one ``core.project.Project`` per opened folder.

An image opened on its own belongs to the project of its folder. The bundled samples keep their
project in the user's data folder (``paths.bundled_project_dir``), never in the install. When a folder cannot hold its
project (read-only), the problem is kept and shown, and the user may pick another folder
(``use_project_dir``); statuses are then saved there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dermaseg_app import paths
from dermaseg_app.core.project import Project, ProjectError, ReviewStatus


@dataclass
class ProjectBook:
    roots: list[Path] = field(default_factory=list)  # image folders that own projects
    projects: dict[Path, Project] = field(default_factory=dict)
    problems: dict[Path, str] = field(default_factory=dict)  # root -> why it has no project
    warnings: list[str] = field(default_factory=list)

    def add_root(self, folder: Path, project_dir: Path | None = None) -> None:
        folder = folder.resolve()
        if folder not in self.roots:
            self.roots.append(folder)
        if project_dir is None and paths.is_bundled(folder):
            # The bundled samples: the app's install folder is not the user's to write in.
            project_dir = paths.bundled_project_dir(folder)
        try:
            project = Project.open_for(folder, project_dir)
        except ProjectError as exc:
            self.problems[folder] = (
                f"Review status and notes cannot be saved in {folder}: {exc.reason}. "
                "Choose a project folder to save them elsewhere."
            )
            self.projects.pop(folder, None)
            return
        self.problems.pop(folder, None)
        self.projects[folder] = project
        self.warnings.extend(project.warnings)

    def root_for(self, image: Path) -> Path | None:
        image = image.resolve()
        best = None
        for root in self.roots:
            if image.is_relative_to(root) and (best is None or len(root.parts) > len(best.parts)):
                best = root
        return best

    def project_for(self, image: Path) -> Project | None:
        root = self.root_for(image)
        return self.projects.get(root) if root is not None else None

    def problem_for(self, image: Path) -> str:
        root = self.root_for(image)
        return self.problems.get(root, "") if root is not None else ""

    def use_project_dir(self, image: Path, project_dir: Path) -> None:
        root = self.root_for(image)
        if root is not None:
            self.add_root(root, project_dir)

    def record(self, image: Path) -> tuple[ReviewStatus, str]:
        project = self.project_for(image)
        if project is None:
            return ReviewStatus.UNREVIEWED, ""
        rec = project.record(image)
        return rec.status, rec.note
