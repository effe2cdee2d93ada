namespace Monitoring.Stream.Kafka.WireFormat;

/// <summary>Limits a <see cref="PointBatchDecoder"/> enforces on untrusted messages before it allocates anything for them.</summary>
public sealed class PointDecoderLimits
{
    /// <summary>Largest message accepted, in bytes (default 8 MiB).</summary>
    public int MaxMessageBytes { get; set; } = 8 * 1024 * 1024;

    /// <summary>Most points in one message (default 200,000).</summary>
    public int MaxPointsPerMessage { get; set; } = 200_000;

    /// <summary>Most entries in a message's string table (default 65,536).</summary>
    public int MaxStrings { get; set; } = 65_536;

    /// <summary>Most entries in a message's series table (default 65,536).</summary>
    public int MaxSeries { get; set; } = 65_536;

    /// <summary>Most labels of one series entry (default 32, the registry's default).</summary>
    public int MaxLabelsPerSeries { get; set; } = 32;

    /// <summary>Longest string, in UTF-8 bytes (default 4,096).</summary>
    public int MaxStringBytes { get; set; } = 4096;

    /// <summary>Deepest nesting of arrays and maps, counting the top-level array as 1 (default 8).</summary>
    public int MaxDepth { get; set; } = 8;

    /// <summary>Series the decoder remembers across messages before it starts afresh (default 1,000,000).</summary>
    public int MaxCachedSeries { get; set; } = 1_000_000;

    /// <summary>Distinct strings (metric and label names and values) the decoder remembers by their bytes before it starts afresh (default 2,000,000).</summary>
    public int MaxCachedStrings { get; set; } = 2_000_000;

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxMessageBytes, 1, nameof(MaxMessageBytes));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxPointsPerMessage, 1, nameof(MaxPointsPerMessage));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxStrings, 1, nameof(MaxStrings));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxSeries, 1, nameof(MaxSeries));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxLabelsPerSeries, 0, nameof(MaxLabelsPerSeries));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxStringBytes, 1, nameof(MaxStringBytes));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxDepth, 3, nameof(MaxDepth));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxDepth, 64, nameof(MaxDepth));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxCachedSeries, 1, nameof(MaxCachedSeries));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxCachedStrings, 1, nameof(MaxCachedStrings));
    }
}
