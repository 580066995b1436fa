"""Which setting the ranks of a job disagree on, and who holds what: the line every rank ends with."""

from __future__ import annotations

from anomalib_folder_ext.distributed.ranks import disagreement


def test_the_first_differing_setting_is_named_with_each_nodes_value():
    views = [{"folder_path": "/a", "checkpoint": "ab" * 32, "batch_size": 8},
             {"folder_path": "/a", "checkpoint": "cd" * 32, "batch_size": 4}]
    assert disagreement(views, 1) == ("checkpoint", "content abababababab… on node 0; content cdcdcdcdcdcd… on node 1")


def test_nodes_holding_one_value_are_named_together_and_a_lone_rank_by_its_number():
    views = [{"output_dir": "/out"}] * 4 + [{"output_dir": "/elsewhere"}] * 2
    assert disagreement(views, 2) == ("output_dir", "'/out' on nodes 0, 1; '/elsewhere' on node 2")
    split_node = [{"batch_size": 8}, {"batch_size": 8}, {"batch_size": 8}, {"batch_size": 2}]
    assert disagreement(split_node, 2) == ("batch_size", "8 on ranks 0, 1, 2; 2 on rank 3")


def test_a_setting_one_rank_lacks_is_a_disagreement_and_agreeing_ranks_are_none():
    assert disagreement([{"a": 1}, {"a": 1, "b": None}], 1) is None  # missing and None read the same
    assert disagreement([{"a": 1}, {"a": 1, "b": 2}], 1) == ("b", "None on node 0; 2 on node 1")
    assert disagreement([{"image_size": (256, 256)}] * 3, 1) is None
