using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Instruments;

/// <summary>
/// A gauge: each call sets the current level. A window keeps the last value set and the statistics
/// (count, min, max, mean, variance, quantiles) of every value set in it.
/// </summary>
public sealed class MetricGauge : MetricInstrument
{
    internal MetricGauge(MetricsCollector collector, string name, string[] labelNames, string? description, string? unit)
        : base(collector, name, InstrumentKind.Gauge, labelNames, description, unit)
    {
    }

    /// <summary>Sets the level of the series named by <paramref name="labelValues"/>, stamped with the engine clock.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the value was refused (counted).</returns>
    public RejectReason Set(double value, params ReadOnlySpan<string> labelValues) => WriteLabelled(value, null, labelValues);

    /// <summary>Sets the level at an explicit event time (ms since the Unix epoch).</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the value was refused (counted).</returns>
    public RejectReason SetAt(long timestampUnixMs, double value, params ReadOnlySpan<string> labelValues) => WriteLabelled(value, timestampUnixMs, labelValues);

    /// <summary>Resolves the label values once and returns a handle that writes to that series by id.</summary>
    /// <exception cref="ArgumentException">The number of values differs from the label names, or a value is longer than
    /// <c>SeriesRegistryOptions.MaxLabelValueLength</c> (a <see cref="MetricValidationException"/>). At the metric's series limit
    /// nothing is thrown: the handle writes to the metric's overflow series, as a labelled call would.</exception>
    public BoundGauge Bind(params ReadOnlySpan<string> labelValues) => new(ResolveOrThrow(labelValues));
}
