using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Instruments;

/// <summary>A counter series whose labels were resolved once: each call writes by series id, with no lookup.</summary>
public sealed class BoundCounter
{
    private readonly MetricsCollector _collector;

    // Not readonly: the binding is a mutable struct that re-resolves in place (a readonly field would be copied per call).
#pragma warning disable IDE0044
    private SeriesBinding _binding;
#pragma warning restore IDE0044

    internal BoundCounter(MetricsCollector collector, SeriesBinding binding)
    {
        _collector = collector;
        _binding = binding;
    }

    /// <summary>The engine's id of the series (a new one after the engine reclaimed the series for idleness).</summary>
    public SeriesId Series => _binding.Current;

    /// <summary>Adds a non-negative increment, stamped with the engine clock.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the increment was refused (counted).</returns>
    public RejectReason Add(double increment)
    {
        RejectReason reason = PointValidator.ValidateCounterIncrement(increment);
        return reason != RejectReason.None ? _collector.CountRejected(reason) : _binding.Write(increment);
    }

    /// <summary>Adds a non-negative increment at an explicit event time (ms since the Unix epoch).</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the increment was refused (counted).</returns>
    public RejectReason Add(double increment, long timestampUnixMs)
    {
        RejectReason reason = PointValidator.ValidateCounterIncrement(increment);
        return reason != RejectReason.None ? _collector.CountRejected(reason) : _binding.Write(increment, timestampUnixMs);
    }
}
