"""inference.py --segment_labels: every 5-frame segment of the test records
scored by a restored model, written as the later starter's ``Class,Segments``
submission (``segments.submission``) in one pass, in bounded memory."""

from __future__ import annotations

import logging
import os
import time

import tensorflow as tf

from youtube8m_willow.data.files import describe_data
from youtube8m_willow.data.readers import (DataError, ReaderConfig, report_skipped,
                                           warn_if_classes_disagree)
from youtube8m_willow.data.segments import make_test_segment_dataset
from youtube8m_willow.progress import ProgressBar
from youtube8m_willow.segments.submission import SegmentSubmissionWriter, read_segment_label_ids

log = logging.getLogger("youtube8m_willow")

# The real 1000-class whitelist of the 2019 challenge, shipped with the package
# (the original downloaded it from an http URL by default).
DEFAULT_SEGMENT_LABEL_IDS = os.path.join(os.path.dirname(__file__), "segment_label_ids.csv")


def run_segment_inference(predictor, config, output_file: str, segment_label_ids_file: str,
                          segment_max_pred: int) -> int:
    """Writes the ``Class,Segments`` CSV of the test segments of
    ``config.data_pattern``; returns the number of segments scored.

    ``predictor``: a restored ``prediction.Predictor``; ``config``: an ``EvalConfig``.
    """
    whitelist = read_segment_label_ids(segment_label_ids_file or DEFAULT_SEGMENT_LABEL_IDS)
    log.info("%d whitelisted classes, %d segments kept per class", whitelist.size,
             segment_max_pred)
    reader_config = ReaderConfig.for_model(predictor.model_config, config.skip_bad_records,
                                           config.drop_out_of_range_labels)
    warn_if_classes_disagree(config.data_pattern, reader_config, log)
    dataset = make_test_segment_dataset(config.data_pattern, reader_config, config.batch_size,
                                        num_readers=config.num_readers)
    log.info("input: %s, batch %d; output: %s", describe_data(config.data_pattern)[0],
             config.batch_size, output_file)
    segments, start = 0, time.monotonic()
    with SegmentSubmissionWriter(output_file, whitelist, max_pred=segment_max_pred,
                                 top_k=config.top_k) as writer, \
            ProgressBar("predict", unit="segments") as bar:
        for batch in dataset:
            writer.add(batch["video_ids"].numpy(), predictor(batch).numpy())
            batch_segments = int(tf.shape(batch["video_ids"])[0])
            segments += batch_segments
            if bar.active:
                bar.update(batch_segments)
            else:
                log.info("num segments processed: %d elapsed seconds: %.2f", segments,
                         time.monotonic() - start)
        report_skipped(dataset, log)
        if segments == 0:  # raised inside: the CSV is not written
            raise DataError(f"no records to predict in --input_data_pattern "
                            f"'{config.data_pattern}' (empty files?)")
    log.info("wrote the Class,Segments submission of %d segments to %s", segments, output_file)
    return segments
