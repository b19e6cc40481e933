"""The review project of the bundled samples lives in the user's data folder, not in the install."""

from dermaseg_app import paths
from dermaseg_app.app.projects import ProjectBook
from dermaseg_app.core.project import ReviewStatus


def test_bundled_samples_project_goes_to_user_data(samples_dir, tmp_path):
    before = sorted(p.name for p in samples_dir.iterdir())
    book = ProjectBook()
    book.add_root(samples_dir)
    image = sorted(samples_dir.glob("*.jpg"))[0]
    project = book.project_for(image)
    assert project is not None
    project.set_status(image, ReviewStatus.ACCEPTED)

    assert paths.user_data_dir().resolve().is_relative_to(tmp_path.resolve())  # conftest isolates it
    assert sorted(p.name for p in samples_dir.iterdir()) == before  # nothing written in resources
    reopened = ProjectBook()
    reopened.add_root(samples_dir)
    assert reopened.project_for(image).record(image).status is ReviewStatus.ACCEPTED


def test_a_user_folder_keeps_its_project_beside_the_images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    assert not paths.is_bundled(folder)
    book = ProjectBook()
    book.add_root(folder)
    assert book.project_for(folder / "x.jpg") is not None
    assert (folder / "dermaseg-project").is_dir()
