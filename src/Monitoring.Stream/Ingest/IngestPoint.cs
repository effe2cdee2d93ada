using System.Runtime.InteropServices;

namespace Monitoring.Stream.Ingest;

/// <summary>One point on its way to a shard: the series' slot in that shard, the value, the event time.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct IngestPoint
{
    /// <summary><c>SeriesId / shardCount</c>: dense per shard, so shard state is a plain array.</summary>
    public int Slot;

    /// <summary>The series id's generation: fills what would be padding, so the point stays 24 bytes.</summary>
    public int Generation;
    public double Value;
    public long TimestampUnixMs;
}
