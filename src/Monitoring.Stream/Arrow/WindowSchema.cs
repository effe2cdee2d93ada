using Apache.Arrow;
using Apache.Arrow.Types;

namespace Monitoring.Stream.Arrow;

/// <summary>The Arrow schema of emitted windows (docs/arrow-schema.md), version 1.</summary>
public static class WindowSchema
{
    /// <summary>Version of the column layout, in the schema metadata under <see cref="VersionKey"/>.</summary>
    public const string Version = "1";

    /// <summary>Schema metadata key of the layout version.</summary>
    public const string VersionKey = "monitoring_stream.schema_version";

    /// <summary>Schema metadata key of the engine instance that wrote the data.</summary>
    public const string InstanceKey = "monitoring_stream.instance";

    /// <summary>Metadata key of the window start (ms since the epoch) on a single-window stream.</summary>
    public const string WindowStartKey = "monitoring_stream.window_start_ms";

    /// <summary>Metadata key of the window end (ms since the epoch) on a single-window stream.</summary>
    public const string WindowEndKey = "monitoring_stream.window_end_ms";

    /// <summary>Metadata key of the shard on a single-window stream.</summary>
    public const string ShardKey = "monitoring_stream.shard";

    /// <summary>Metadata key of the shard's emission sequence number of a batch: with the instance, shard and window it identifies the batch.</summary>
    public const string SequenceKey = "monitoring_stream.sequence";

    /// <summary>Column names, in order.</summary>
    public static readonly IReadOnlyList<string> Columns =
    [
        "window_start", "window_end", "metric", "labels", "count", "sum", "min", "max", "mean", "m2",
        "variance", "stddev", "last", "p50", "p90", "p95", "p99", "sketch",
    ];

    /// <summary>The quantiles in columns p50, p90, p95 and p99.</summary>
    public static readonly double[] Quantiles = [0.5, 0.9, 0.95, 0.99];

    internal static TimestampType TimestampNanosUtcType { get; } = new(TimeUnit.Nanosecond, "UTC");

    internal static MapType LabelsMapType { get; } = new(StringType.Default, StringType.Default, nullable: false, keySorted: true);

    /// <summary>Builds the schema, with the instance and any extra metadata.</summary>
    public static Schema Create(string instance, IEnumerable<KeyValuePair<string, string>>? extraMetadata = null)
    {
        var builder = new Schema.Builder()
            .Field(f => f.Name("window_start").DataType(TimestampNanosUtcType).Nullable(false))
            .Field(f => f.Name("window_end").DataType(TimestampNanosUtcType).Nullable(false))
            .Field(f => f.Name("metric").DataType(StringType.Default).Nullable(false))
            .Field(f => f.Name("labels").DataType(LabelsMapType).Nullable(false))
            .Field(f => f.Name("count").DataType(Int64Type.Default).Nullable(false));
        foreach (string name in (string[])["sum", "min", "max", "mean", "m2", "variance", "stddev", "last", "p50", "p90", "p95", "p99"])
        {
            // Quantiles are null when sketches are off; the rest are always present.
            bool nullable = name.StartsWith('p');
            builder.Field(f => f.Name(name).DataType(DoubleType.Default).Nullable(nullable));
        }

        builder.Field(f => f.Name("sketch").DataType(BinaryType.Default).Nullable(true))
            .Metadata(VersionKey, Version)
            .Metadata(InstanceKey, instance);
        if (extraMetadata is not null)
        {
            builder.Metadata(extraMetadata);
        }

        return builder.Build();
    }
}
