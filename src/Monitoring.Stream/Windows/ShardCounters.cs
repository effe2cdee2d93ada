using System.Runtime.InteropServices;

namespace Monitoring.Stream.Windows;

/// <summary>
/// Counters of one shard, written by the shard's own task and read by anyone. Each sits on its own
/// cache line so a reader polling them does not slow the shard.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 384)]
internal struct ShardCounters
{
    /// <summary>Points added to a window.</summary>
    [FieldOffset(64)]
    public long Aggregated;

    /// <summary>Points whose window had already closed.</summary>
    [FieldOffset(128)]
    public long Late;

    /// <summary>Points in windows emitted to the sinks.</summary>
    [FieldOffset(192)]
    public long EmittedPoints;

    /// <summary>Windows emitted (one per shard and window with data).</summary>
    [FieldOffset(256)]
    public long WindowsEmitted;

    /// <summary>Points written through the id of a series reclaimed since: refused at the shard.</summary>
    [FieldOffset(320)]
    public long Stale;
}
