namespace Monitoring.Stream.Model;

/// <summary>Stable names and human-readable explanations of <see cref="RejectReason"/> values.</summary>
public static class RejectReasonExtensions
{
    /// <summary>The snake_case name used in self-metrics labels and dead-letter headers.</summary>
    public static string ToMetricLabel(this RejectReason reason) => reason switch
    {
        RejectReason.None => "none",
        RejectReason.NotANumber => "nan",
        RejectReason.Infinity => "infinity",
        RejectReason.NegativeCounterIncrement => "negative_counter_increment",
        RejectReason.InvalidMetricName => "invalid_metric_name",
        RejectReason.InvalidLabelName => "invalid_label_name",
        RejectReason.DuplicateLabelName => "duplicate_label_name",
        RejectReason.TooManyLabels => "too_many_labels",
        RejectReason.LabelValueTooLong => "label_value_too_long",
        RejectReason.MetricLimitExceeded => "metric_limit_exceeded",
        RejectReason.TimestampOutOfRange => "timestamp_out_of_range",
        RejectReason.Malformed => "malformed",
        RejectReason.Oversized => "oversized",
        RejectReason.ValueOutOfRange => "value_out_of_range",
        RejectReason.UnknownSeries => "unknown_series",
        RejectReason.TimestampTooOld => "timestamp_too_old",
        RejectReason.WriterClosed => "writer_closed",
        RejectReason.LabelCountMismatch => "label_count_mismatch",
        _ => "unknown",
    };

    /// <summary>A sentence explaining the reason to the person who sent the data.</summary>
    public static string Describe(this RejectReason reason) => reason switch
    {
        RejectReason.None => "accepted",
        RejectReason.NotANumber => "the value is NaN",
        RejectReason.Infinity => "the value is infinite",
        RejectReason.NegativeCounterIncrement => "a counter cannot be incremented by a negative amount",
        RejectReason.InvalidMetricName => "the metric name must match [a-zA-Z_:][a-zA-Z0-9_:]* and be at most the configured length",
        RejectReason.InvalidLabelName => "a label name must match [a-zA-Z_][a-zA-Z0-9_]*, must not start with __, and be at most the configured length",
        RejectReason.DuplicateLabelName => "two labels share one name",
        RejectReason.TooManyLabels => "the series has more labels than the configured limit",
        RejectReason.LabelValueTooLong => "a label value is longer than the configured limit",
        RejectReason.MetricLimitExceeded => "the engine tracks the configured maximum number of metric names already",
        RejectReason.TimestampOutOfRange => "the timestamp is further in the future, by the engine's clock, than the allowed skew, or its window lies outside the years 1677-2262 that Arrow's nanosecond timestamps hold",
        RejectReason.Malformed => "the message could not be decoded",
        RejectReason.Oversized => "the message is larger than the configured limit",
        RejectReason.ValueOutOfRange => "the value's magnitude exceeds 1e100, beyond which the series' sum and variance could overflow",
        RejectReason.UnknownSeries => "the series id was not issued by this pipeline's registry",
        RejectReason.TimestampTooOld => "the timestamp is older than the configured maximum point age",
        RejectReason.WriterClosed => "the writer was disposed or its pipeline stopped",
        RejectReason.LabelCountMismatch => "the number of label values differs from the instrument's label names",
        _ => "unknown reason",
    };
}
