using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Instruments;

/// <summary>
/// A histogram: each call records one observation. A window keeps every statistic and the quantile
/// sketch, so any quantile of any span can be merged later.
/// </summary>
public sealed class MetricHistogram : MetricInstrument
{
    internal MetricHistogram(MetricsCollector collector, string name, InstrumentKind kind, string[] labelNames, string? description, string? unit)
        : base(collector, name, kind, labelNames, description, unit)
    {
    }

    /// <summary>Records <paramref name="value"/> for the series named by <paramref name="labelValues"/>, stamped with the engine clock.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the value was refused (counted).</returns>
    public RejectReason Record(double value, params ReadOnlySpan<string> labelValues) => WriteLabelled(value, null, labelValues);

    /// <summary>Records <paramref name="value"/> at an explicit event time (ms since the Unix epoch).</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the value was refused (counted).</returns>
    public RejectReason RecordAt(long timestampUnixMs, double value, params ReadOnlySpan<string> labelValues) => WriteLabelled(value, timestampUnixMs, labelValues);

    /// <summary>Resolves the label values once and returns a handle that writes to that series by id.</summary>
    /// <exception cref="ArgumentException">The number of values differs from the label names, or a value is longer than
    /// <c>SeriesRegistryOptions.MaxLabelValueLength</c> (a <see cref="MetricValidationException"/>). At the metric's series limit
    /// nothing is thrown: the handle writes to the metric's overflow series, as a labelled call would.</exception>
    public BoundHistogram Bind(params ReadOnlySpan<string> labelValues) => new(ResolveOrThrow(labelValues));
}
