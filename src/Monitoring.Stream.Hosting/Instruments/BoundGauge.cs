using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Instruments;

/// <summary>A gauge series whose labels were resolved once: each call writes by series id, with no lookup.</summary>
public sealed class BoundGauge
{
    // Not readonly: the binding is a mutable struct that re-resolves in place (a readonly field would be copied per call).
#pragma warning disable IDE0044
    private SeriesBinding _binding;
#pragma warning restore IDE0044

    internal BoundGauge(SeriesBinding binding)
    {
        _binding = binding;
    }

    /// <summary>The engine's id of the series (a new one after the engine reclaimed the series for idleness).</summary>
    public SeriesId Series => _binding.Current;

    /// <summary>Sets the level, stamped with the engine clock.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the value was refused (counted by the engine).</returns>
    public RejectReason Set(double value) => _binding.Write(value);

    /// <summary>Sets the level at an explicit event time (ms since the Unix epoch).</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the value was refused (counted by the engine).</returns>
    public RejectReason Set(double value, long timestampUnixMs) => _binding.Write(value, timestampUnixMs);
}
