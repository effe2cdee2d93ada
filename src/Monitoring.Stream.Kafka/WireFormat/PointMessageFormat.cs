namespace Monitoring.Stream.Kafka.WireFormat;

/// <summary>Constants of the point message format (docs/wire-format.md).</summary>
public static class PointMessageFormat
{
    /// <summary>The format version this library writes and reads, the first element of every message.</summary>
    public const int Version = 1;

    /// <summary>Elements of the top-level array of a version 1 message: version, base timestamp, strings, series, points.</summary>
    public const int TopLevelElements = 5;

    /// <summary>Array elements per point in the flat points array: series index, timestamp delta, value.</summary>
    public const int ElementsPerPoint = 3;
}
