namespace Monitoring.Stream.Model;

/// <summary>Why a point or a series was refused. Every refusal is counted under one of these.</summary>
public enum RejectReason
{
    /// <summary>Not refused.</summary>
    None = 0,

    /// <summary>The value is NaN.</summary>
    NotANumber = 1,

    /// <summary>The value is positive or negative infinity.</summary>
    Infinity = 2,

    /// <summary>A counter was asked to add a negative amount.</summary>
    NegativeCounterIncrement = 3,

    /// <summary>The metric name does not match <c>[a-zA-Z_:][a-zA-Z0-9_:]*</c> or is too long.</summary>
    InvalidMetricName = 4,

    /// <summary>A label name does not match <c>[a-zA-Z_][a-zA-Z0-9_]*</c>, is reserved (<c>__</c>) or is too long.</summary>
    InvalidLabelName = 5,

    /// <summary>Two labels of one series share a name.</summary>
    DuplicateLabelName = 6,

    /// <summary>The series has more labels than allowed.</summary>
    TooManyLabels = 7,

    /// <summary>A label value is longer than allowed.</summary>
    LabelValueTooLong = 8,

    /// <summary>The engine already tracks as many metric names as allowed.</summary>
    MetricLimitExceeded = 9,

    /// <summary>
    /// The timestamp is further in the future, by the engine's clock, than the allowed skew, or its window
    /// lies outside the range of Arrow's nanosecond timestamps (1677-09-21 to 2262-04-11).
    /// </summary>
    TimestampOutOfRange = 10,

    /// <summary>The message could not be decoded.</summary>
    Malformed = 11,

    /// <summary>The message is larger than allowed.</summary>
    Oversized = 12,

    /// <summary>The value's magnitude exceeds <see cref="PointValidator.MaxValueMagnitude"/> (1e100), beyond which moments could overflow.</summary>
    ValueOutOfRange = 13,

    /// <summary>The series id was not issued by this pipeline's registry (another pipeline's, or made by hand).</summary>
    UnknownSeries = 14,

    /// <summary>The timestamp is older than the allowed maximum age, by the engine's clock.</summary>
    TimestampTooOld = 15,

    /// <summary>The writer was disposed, or its pipeline stopped, before the write.</summary>
    WriterClosed = 16,

    /// <summary>An instrument was given a different number of label values than it has label names.</summary>
    LabelCountMismatch = 17,
}
