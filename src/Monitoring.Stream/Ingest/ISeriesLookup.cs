using Monitoring.Stream.Model;

namespace Monitoring.Stream.Ingest;

/// <summary>
/// A caller's lookup of a series by its labels (the SDK's labelled calls), which a writer runs only once it holds
/// its gate, for the same reason it reads a bound handle's id there (<see cref="IBoundSeries"/>).
/// </summary>
internal interface ISeriesLookup
{
    /// <summary>Looks the series up; a refusal is returned, and counted by the caller, not by the writer. Must not
    /// throw: the writer's gate is held (an exception would leave it entered until the thread's next call).</summary>
    RejectReason Resolve(out SeriesId id);
}
