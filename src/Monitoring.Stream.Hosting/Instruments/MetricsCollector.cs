using System.Collections.Concurrent;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Hosting.Instruments;

/// <summary>
/// Creates counters, gauges and histograms by name and label names, and writes their values into a
/// <see cref="MetricsPipeline"/>. Thread-safe: any thread may create instruments and write through them.
/// </summary>
/// <remarks>
/// A bad name or label name throws <see cref="MetricValidationException"/> when the instrument is
/// created; a bad call (wrong number of label values, a negative counter increment, NaN) never throws:
/// it returns the reason and is counted, here or in the engine's self-metrics.
/// </remarks>
public sealed class MetricsCollector : IDisposable
{
    private readonly ConcurrentDictionary<string, MetricInstrument> _instruments = new(StringComparer.Ordinal);
    private readonly long[] _rejected = new long[(int)Enum.GetValues<RejectReason>().Max() + 1];
    private readonly Lock _createGate = new();

    /// <summary>Creates a collector writing into <paramref name="pipeline"/>, counted under the source <paramref name="source"/>.</summary>
    public MetricsCollector(MetricsPipeline pipeline, string source = "sdk")
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        Writer = new EngineWriter(pipeline, source);
    }

    /// <summary>The engine the instruments write into.</summary>
    public MetricsPipeline Pipeline => Writer.Pipeline;

    /// <summary>Every instrument created so far.</summary>
    public IReadOnlyCollection<MetricInstrument> Instruments => [.. _instruments.Values];

    /// <summary>Calls refused because the number of label values differed from the instrument's label names (<see cref="RejectReason.LabelCountMismatch"/>).</summary>
    public long LabelCountMismatches => GetRejectedCount(RejectReason.LabelCountMismatch);

    /// <summary>All calls refused by the instruments themselves (the engine counts its own refusals in its self-metrics).</summary>
    public long Rejected
    {
        get
        {
            long total = 0;
            for (int i = 0; i < _rejected.Length; i++)
            {
                total += Interlocked.Read(ref _rejected[i]);
            }

            return total;
        }
    }

    internal EngineWriter Writer { get; }

    /// <summary>Calls refused by the instruments for <paramref name="reason"/>, e.g. <see cref="RejectReason.LabelCountMismatch"/>.</summary>
    public long GetRejectedCount(RejectReason reason) => Interlocked.Read(ref _rejected[(int)reason]);

    /// <summary>Creates (or returns the existing) monotonic counter <paramref name="name"/>.</summary>
    /// <exception cref="MetricValidationException">The name or a label name breaks the data model, or the name is taken by another kind or label set.</exception>
    public MetricCounter CreateCounter(string name, IReadOnlyList<string>? labelNames = null, string? description = null, string? unit = null) =>
        (MetricCounter)GetOrCreate(name, InstrumentKind.Counter, labelNames, (n, l) => new MetricCounter(this, n, l, description, unit));

    /// <summary>Creates (or returns the existing) gauge <paramref name="name"/>.</summary>
    /// <exception cref="MetricValidationException">The name or a label name breaks the data model, or the name is taken by another kind or label set.</exception>
    public MetricGauge CreateGauge(string name, IReadOnlyList<string>? labelNames = null, string? description = null, string? unit = null) =>
        (MetricGauge)GetOrCreate(name, InstrumentKind.Gauge, labelNames, (n, l) => new MetricGauge(this, n, l, description, unit));

    /// <summary>Creates (or returns the existing) histogram <paramref name="name"/>.</summary>
    /// <exception cref="MetricValidationException">The name or a label name breaks the data model, or the name is taken by another kind or label set.</exception>
    public MetricHistogram CreateHistogram(string name, IReadOnlyList<string>? labelNames = null, string? description = null, string? unit = null) =>
        (MetricHistogram)GetOrCreate(name, InstrumentKind.Histogram, labelNames, (n, l) => new MetricHistogram(this, n, InstrumentKind.Histogram, l, description, unit));

    /// <summary>Creates (or returns the existing) up-down counter: increments of either sign, written as observations.</summary>
    /// <exception cref="MetricValidationException">The name or a label name breaks the data model, or the name is taken by another kind or label set.</exception>
    public MetricHistogram CreateUpDownCounter(string name, IReadOnlyList<string>? labelNames = null, string? description = null, string? unit = null) =>
        (MetricHistogram)GetOrCreate(name, InstrumentKind.UpDownCounter, labelNames, (n, l) => new MetricHistogram(this, n, InstrumentKind.UpDownCounter, l, description, unit));

    /// <summary>The instrument named <paramref name="name"/>, if one was created.</summary>
    public MetricInstrument? Find(string name) => _instruments.GetValueOrDefault(name);

    /// <summary>Hands every buffered point to the engine now (the engine also does so on its flush interval).</summary>
    public void Flush() => Writer.Flush();

    /// <summary>Flushes and detaches from the engine; later writes are not recorded.</summary>
    public void Dispose() => Writer.Dispose();

    internal RejectReason CountRejected(RejectReason reason)
    {
        Interlocked.Increment(ref _rejected[(int)reason]);
        return reason;
    }

    private MetricInstrument GetOrCreate(string name, InstrumentKind kind, IReadOnlyList<string>? labelNames, Func<string, string[], MetricInstrument> create)
    {
        string[] names = [.. labelNames ?? []];
        Validate(name, names);
        if (_instruments.TryGetValue(name, out MetricInstrument? existing))
        {
            return SameOrThrow(existing, kind, names);
        }

        lock (_createGate)
        {
            if (_instruments.TryGetValue(name, out existing))
            {
                return SameOrThrow(existing, kind, names);
            }

            MetricInstrument created = create(name, names);
            _instruments[name] = created;
            return created;
        }
    }

    private static MetricInstrument SameOrThrow(MetricInstrument existing, InstrumentKind kind, string[] labelNames)
    {
        if (!existing.HasSameShape(kind, labelNames))
        {
            throw new MetricValidationException(RejectReason.InvalidMetricName,
                $"Metric '{existing.Name}' already exists as a {existing.Kind} with labels ({string.Join(", ", existing.LabelNames)}); it cannot be created again as a {kind} with labels ({string.Join(", ", labelNames)}).");
        }

        return existing;
    }

    private void Validate(string name, string[] labelNames)
    {
        ArgumentNullException.ThrowIfNull(name);
        var limits = Pipeline.Registry.Options;
        if (!PrometheusNames.IsValidMetricName(name) || name.Length > limits.MaxNameLength)
        {
            throw new MetricValidationException(RejectReason.InvalidMetricName,
                $"Invalid metric name '{name}': it must match [a-zA-Z_:][a-zA-Z0-9_:]* and be at most {limits.MaxNameLength} characters.");
        }

        if (labelNames.Length > limits.MaxLabelsPerSeries)
        {
            throw new MetricValidationException(RejectReason.TooManyLabels,
                $"Metric '{name}' has {labelNames.Length} label names; at most {limits.MaxLabelsPerSeries} are allowed.");
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string label in labelNames)
        {
            if (label is null || !PrometheusNames.IsValidLabelName(label) || label.Length > limits.MaxNameLength)
            {
                throw new MetricValidationException(RejectReason.InvalidLabelName,
                    $"Invalid label name '{label}' of metric '{name}': it must match [a-zA-Z_][a-zA-Z0-9_]*, not start with '__', and be at most {limits.MaxNameLength} characters.");
            }

            if (!seen.Add(label))
            {
                throw new MetricValidationException(RejectReason.DuplicateLabelName, $"Label name '{label}' appears twice in metric '{name}'.");
            }
        }
    }
}
