"""The Python paths, in this process: the front door against the command, anomalib's own Engine.predict with
the datamodule and the writer (resume, overwrite, a reused dir), and errors that arrive as exceptions."""

from __future__ import annotations

import sys

import pytest

from conftest import run_here, write_images

pytestmark = pytest.mark.slow

IMAGES = {f"part_{index}.png": ((256, 256), "PNG") for index in range(4)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("python_api")
    write_images(root / "batch_01", IMAGES)
    return root / "batch_01"


def test_the_front_door_writes_what_the_command_writes(checkpoint, folder, tmp_path):
    from anomalib_folder_ext import predict_folder

    command = run_here(["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path", str(folder),
                        "--output_dir", str(tmp_path / "command"), "--batch_size", "2", "--normalization", "model"],
                       cwd=tmp_path)
    assert command.returncode == 0, command.stderr
    result = predict_folder(folder, checkpoint, tmp_path / "python", batch_size=2, normalization="model")
    assert (tmp_path / "python" / "results.csv").read_bytes() == (tmp_path / "command" / "results.csv").read_bytes()
    assert result.images == 4 and result.predicted == 4 and result.output_dir == tmp_path / "python"
    for row in result.rows:
        assert (tmp_path / "python" / row.npy).read_bytes() == (tmp_path / "command" / row.npy).read_bytes()


def _engine_run(checkpoint, folder, data_output_dir, **writer_options):
    from anomalib.engine import Engine
    from anomalib.models import EfficientAd

    from anomalib_folder_ext import AnomalyMapWriter, ChannelsLast, FolderDataModule

    writer = AnomalyMapWriter(save_as_image=False, **writer_options)
    engine = Engine(callbacks=[ChannelsLast(), writer], logger=False)
    engine.predict(model=EfficientAd(visualizer=False), ckpt_path=checkpoint,
                   datamodule=FolderDataModule(folder_path=folder, output_dir=data_output_dir, batch_size=2))
    return writer


def test_engine_predict_resumes_overwrites_and_refuses_in_python_terms(checkpoint, folder, tmp_path):
    from anomalib_folder_ext import OutputDirError

    hook = sys.excepthook
    first = _engine_run(checkpoint, folder, tmp_path / "out")
    assert first.result.images == 4 and first.result.predicted == 4
    resumed = _engine_run(checkpoint, folder, tmp_path / "out", resume=True)  # the Engine's ckpt_path is the same model
    assert resumed.result.images == 4 and resumed.result.predicted == 0
    with pytest.raises(OutputDirError) as refused:
        _engine_run(checkpoint, folder, tmp_path / "out")
    assert "AnomalyMapWriter(overwrite=True)" in str(refused.value) and refused.value.option == "output_dir"
    assert "AnomalyMapWriter(resume=True)" in str(refused.value) and "--trainer" not in str(refused.value)
    with pytest.raises(OutputDirError, match="is not the datamodule's output_dir") as two_dirs:  # one owner: the data
        _engine_run(checkpoint, folder, tmp_path / "out", output_dir=tmp_path / "elsewhere", overwrite=True)
    assert two_dirs.value.option == "output_dir" and not (tmp_path / "elsewhere").exists()
    again = _engine_run(checkpoint, folder, tmp_path / "out", output_dir=tmp_path / "out", overwrite=True)
    assert again.result.predicted == 4
    assert sys.excepthook is hook


def test_resume_from_python_refuses_other_weights(checkpoint, folder, tmp_path):
    from anomalib_folder_ext import InputError

    _engine_run(checkpoint, folder, tmp_path / "out")
    other = tmp_path / "other.ckpt"
    other.write_bytes(checkpoint.read_bytes() + b"\0")  # the same weights, another file content: another model
    with pytest.raises(InputError, match="its earlier run used other weights"):
        _engine_run(other, folder, tmp_path / "out", resume=True)


def test_errors_arrive_as_exceptions_and_the_process_goes_on(checkpoint, tmp_path):
    from anomalib_folder_ext import FolderInputError, InputError, NoImagePredicted, predict_folder

    with pytest.raises(FolderInputError) as missing:
        predict_folder(tmp_path / "nope", checkpoint)
    assert missing.value.option == "folder_path" and str(missing.value).endswith("no such folder")
    with pytest.raises(InputError, match="normalization fixed needs finite vmin < vmax"):
        predict_folder(tmp_path, checkpoint, normalization="fixed")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("a.png", "b.png"):
        (broken / name).write_bytes(b"not a png")
    with pytest.raises(NoImagePredicted) as none:
        predict_folder(broken, checkpoint, tmp_path / "out")
    assert "none of the 2 images could be predicted" in str(none.value)
    assert [row.image for row in none.value.result.failed] == ["a.png", "b.png"]
    assert (tmp_path / "out" / "results.csv").is_file()


def test_predict_batches_takes_override_files_as_predict_batches_does(checkpoint, tmp_path):
    """A list of per-folder override files (what `split` writes): each folder once, the combined files."""
    from anomalib_folder_ext import InputError, predict_batches

    overrides = []
    for name in ("lot_a", "lot_b"):
        write_images(tmp_path / name, {f"{name}_{index}.png": ((64, 64), "PNG") for index in range(2)})
        override = tmp_path / f"{name}.yaml"
        override.write_text(f"data:\n  init_args:\n    folder_path: {tmp_path / name}\n")
        overrides.append(override)
    result = predict_batches(overrides, checkpoint, output_root=tmp_path / "out")
    assert sorted(result.folders) == ["lot_a", "lot_b"] and result.images == 4 and not result.failed
    assert (tmp_path / "out" / "inference_results_lot_b" / "results.csv").is_file() and result.all_batches_csv.is_file()
    again = predict_batches(overrides, checkpoint, output_root=tmp_path / "out")
    assert [folder.status for folder in again.folders.values()] == ["done earlier", "done earlier"]
    with pytest.raises(InputError, match="nope.yaml: no such override file") as missing:
        predict_batches([tmp_path / "nope.yaml"], checkpoint, output_root=tmp_path / "out")
    assert missing.value.option == "root"
