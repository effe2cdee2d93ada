using Monitoring.Stream.Model;

namespace Monitoring.Stream.Ingest;

/// <summary>
/// A series id kept by a caller and re-resolved when the registry reclaims series (an SDK bound handle): a
/// writer reads it only once it holds its gate, so the engine cannot flush the writer past a reclaim between
/// the read and the point's append (which would let the shard retire the id first and refuse the point as stale).
/// </summary>
internal interface IBoundSeries
{
    /// <summary>The id to write now; must not throw (the writer's gate is held).</summary>
    SeriesId Current { get; }
}
