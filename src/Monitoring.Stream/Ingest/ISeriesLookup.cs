using Monitoring.Stream.Model;
using Monitoring.Stream.Series;

namespace Monitoring.Stream.Ingest;

/// <summary>
/// How a write finds its series (a labelled call's registry lookup, an SDK bound handle's kept id), run by the
/// writer only once it holds its gate (<see cref="PointWriter.WriteLookedUp{TLookup}(ref TLookup, double, long)"/>).
/// </summary>
/// <remarks>
/// A thread stopped between finding an id and appending its point would look quiet to the engine, which could
/// flush its writer past a reclaim of that series and retire the id: the point would then be refused as stale.
/// While the thread is inside the gate the engine cannot flush its writer, so the retirement waits for the point.
/// </remarks>
internal interface ISeriesLookup
{
    /// <summary>Whether the writer counts a refusal of the lookup for its source (else the caller counts it).</summary>
    static abstract bool RefusalsCountedByWriter { get; }

    /// <summary>Finds the series, or why not. Must not throw: the writer's gate is held (an exception would leave
    /// it entered until the thread's next call).</summary>
    RejectReason Resolve(out SeriesId id);
}

/// <summary>The engine's labelled write: the registry's lookup of a metric and labels, refusals counted by the writer.</summary>
internal readonly ref struct RegistryLookup(SeriesRegistry registry, string metric, ReadOnlySpan<Label> labels) : ISeriesLookup
{
    private readonly ReadOnlySpan<Label> _labels = labels;

    public static bool RefusalsCountedByWriter => true;

    public RejectReason Resolve(out SeriesId id) => registry.TryGetOrAdd(metric, _labels, out id);
}
