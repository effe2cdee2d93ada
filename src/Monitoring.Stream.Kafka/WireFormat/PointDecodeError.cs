namespace Monitoring.Stream.Kafka.WireFormat;

/// <summary>Why a whole point message was refused; a refused message goes to the dead-letter topic.</summary>
public enum PointDecodeError
{
    /// <summary>The message decoded.</summary>
    None = 0,

    /// <summary>The message has no bytes.</summary>
    Empty,

    /// <summary>The message is larger than <see cref="PointDecoderLimits.MaxMessageBytes"/>.</summary>
    MessageTooLarge,

    /// <summary>The message ends before a value it announced.</summary>
    Truncated,

    /// <summary>A value has a MessagePack type the format does not allow at its place.</summary>
    UnexpectedType,

    /// <summary>The top-level array is too short, or the first element is not a supported version.</summary>
    UnsupportedVersion,

    /// <summary>The points array claims more points than <see cref="PointDecoderLimits.MaxPointsPerMessage"/>.</summary>
    TooManyPoints,

    /// <summary>The string table claims more strings than <see cref="PointDecoderLimits.MaxStrings"/>.</summary>
    TooManyStrings,

    /// <summary>The series table claims more series than <see cref="PointDecoderLimits.MaxSeries"/>.</summary>
    TooManySeries,

    /// <summary>A series entry has more labels than <see cref="PointDecoderLimits.MaxLabelsPerSeries"/>.</summary>
    TooManyLabels,

    /// <summary>A string is longer than <see cref="PointDecoderLimits.MaxStringBytes"/>.</summary>
    StringTooLong,

    /// <summary>A string is not valid UTF-8.</summary>
    InvalidUtf8,

    /// <summary>An array's length breaks the format (a series entry of even length, points not a multiple of three).</summary>
    InvalidLength,

    /// <summary>A string or series index points outside its table.</summary>
    IndexOutOfRange,

    /// <summary>A timestamp does not fit in 64-bit milliseconds.</summary>
    TimestampOverflow,

    /// <summary>Extra trailing data nests deeper than <see cref="PointDecoderLimits.MaxDepth"/>.</summary>
    NestingTooDeep,

    /// <summary>Bytes follow the top-level array.</summary>
    TrailingBytes,
}
