using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Instruments;

/// <summary>
/// A monotonic counter: each call adds a non-negative increment. In the engine a window's <c>sum</c>
/// is the increase within it and its <c>count</c> the number of increments.
/// </summary>
public sealed class MetricCounter : MetricInstrument
{
    internal MetricCounter(MetricsCollector collector, string name, string[] labelNames, string? description, string? unit)
        : base(collector, name, InstrumentKind.Counter, labelNames, description, unit)
    {
    }

    /// <summary>Adds <paramref name="increment"/> to the series named by <paramref name="labelValues"/>, stamped with the engine clock.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the increment was refused (counted).</returns>
    public RejectReason Add(double increment, params ReadOnlySpan<string> labelValues)
    {
        RejectReason reason = PointValidator.ValidateCounterIncrement(increment);
        return reason != RejectReason.None ? Collector.CountRejected(reason) : WriteLabelled(increment, null, labelValues);
    }

    /// <summary>Adds <paramref name="increment"/> at an explicit event time (ms since the Unix epoch).</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the increment was refused (counted).</returns>
    public RejectReason AddAt(long timestampUnixMs, double increment, params ReadOnlySpan<string> labelValues)
    {
        RejectReason reason = PointValidator.ValidateCounterIncrement(increment);
        return reason != RejectReason.None ? Collector.CountRejected(reason) : WriteLabelled(increment, timestampUnixMs, labelValues);
    }

    /// <summary>Resolves the label values once and returns a handle that writes to that series by id.</summary>
    /// <exception cref="ArgumentException">The number of values differs from the label names, or a value is longer than
    /// <c>SeriesRegistryOptions.MaxLabelValueLength</c> (a <see cref="MetricValidationException"/>). At the metric's series limit
    /// nothing is thrown: the handle writes to the metric's overflow series, as a labelled call would.</exception>
    public BoundCounter Bind(params ReadOnlySpan<string> labelValues) => new(Collector, ResolveOrThrow(labelValues));
}
