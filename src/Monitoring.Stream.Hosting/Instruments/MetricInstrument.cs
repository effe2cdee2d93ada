using System.Runtime.CompilerServices;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Series;

namespace Monitoring.Stream.Hosting.Instruments;

/// <summary>
/// What every instrument shares: a metric name, label names fixed at creation, and the resolution of
/// label values to a series of the engine.
/// </summary>
public abstract class MetricInstrument
{
    private readonly string[] _labelNames;

    private readonly SeriesRegistry _registry;

    private readonly SharedPointWriter _writer;

    /// <summary>Label positions in the registry's canonical (ordinal) order of names.</summary>
    private readonly int[] _canonicalOrder;

    private protected MetricInstrument(MetricsCollector collector, string name, InstrumentKind kind, string[] labelNames, string? description, string? unit)
    {
        Collector = collector;
        _registry = collector.Pipeline.Registry;
        _writer = collector.Writer.Shared;
        Name = name;
        Kind = kind;
        _labelNames = labelNames;
        _canonicalOrder = [.. Enumerable.Range(0, labelNames.Length).OrderBy(i => labelNames[i], StringComparer.Ordinal)];
        Description = description;
        Unit = unit;
    }

    /// <summary>The metric name in the engine.</summary>
    public string Name { get; }

    /// <summary>What the values mean.</summary>
    public InstrumentKind Kind { get; }

    /// <summary>The label names, in the order label values are given.</summary>
    public IReadOnlyList<string> LabelNames => _labelNames;

    /// <summary>A human description, if given.</summary>
    public string? Description { get; }

    /// <summary>The unit of the values (UCUM-like, e.g. <c>s</c> or <c>By</c>), if given.</summary>
    public string? Unit { get; }

    private protected MetricsCollector Collector { get; }

    /// <summary>Resolves label values to a series binding; throws on a bad count or value, for bind-time use.</summary>
    private protected SeriesBinding ResolveOrThrow(ReadOnlySpan<string> labelValues)
    {
        if (labelValues.Length != _labelNames.Length)
        {
            throw new ArgumentException(
                $"Metric '{Name}' has {_labelNames.Length} label name(s) ({string.Join(", ", _labelNames)}) but {labelValues.Length} value(s) were given.",
                nameof(labelValues));
        }

        var labels = new Label[labelValues.Length];
        for (int i = 0; i < labels.Length; i++)
        {
            labels[i] = new Label(_labelNames[i], labelValues[i] ?? string.Empty);
        }

        return new SeriesBinding(_registry, _writer, Name, labels);
    }

    /// <summary>Writes one value for the series named by the label values; refusals are counted and returned.</summary>
    private protected RejectReason WriteLabelled(double value, long? timestampUnixMs, ReadOnlySpan<string> labelValues)
    {
        if (labelValues.Length != _labelNames.Length)
        {
            return Collector.CountRejected(RejectReason.LabelCountMismatch);
        }

        // PERF: the label set is built on the stack, in the registry's own order, so a caller passing the same
        // value strings every time is answered from the strings' identity, without reading them. Up to four
        // labels are stored at constant positions of a local: plain stores, where storing through a span (which
        // could point into the heap) took a checked write barrier call per reference, 6 for 3 labels, about a
        // third of the call (docs/benchmarks.md, "Session 9"). More labels go through a span: the local's rest,
        // or the thread's scratch array beyond its length.
        int[] order = _canonicalOrder;
        string[] names = _labelNames;
        int count = labelValues.Length;
        if (count > 4)
        {
            return WriteManyLabels(value, timestampUnixMs, labelValues);
        }

        LabelBuffer buffer = default;
        switch (count)
        {
            case 4:
                buffer[3] = new Label(names[order[3]], labelValues[order[3]] ?? string.Empty);
                goto case 3;
            case 3:
                buffer[2] = new Label(names[order[2]], labelValues[order[2]] ?? string.Empty);
                goto case 2;
            case 2:
                buffer[1] = new Label(names[order[1]], labelValues[order[1]] ?? string.Empty);
                goto case 1;
            case 1:
                buffer[0] = new Label(names[order[0]], labelValues[order[0]] ?? string.Empty);
                break;
        }

        // The series is looked up by the writer once it holds its gate (ISeriesLookup): a thread stopped between
        // the lookup and the append cannot be flushed past its series' reclaim meanwhile.
        var lookup = new LabelLookup(_registry, Name, ((ReadOnlySpan<Label>)buffer)[..count]);
        return Written(ref lookup, value, timestampUnixMs);
    }

    /// <summary>Writes through the lookup; a refusal of the lookup itself is counted by the collector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private RejectReason Written(ref LabelLookup lookup, double value, long? timestampUnixMs)
    {
        RejectReason reason = timestampUnixMs is long ts ? _writer.WriteLookedUp(ref lookup, value, ts) : _writer.WriteLookedUp(ref lookup, value);
        return lookup.Refused == RejectReason.None ? reason : Collector.CountRejected(lookup.Refused);
    }

    /// <summary>A call with more than four labels (a rarer shape, kept out of the common call).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private RejectReason WriteManyLabels(double value, long? timestampUnixMs, ReadOnlySpan<string> labelValues)
    {
        LabelBuffer buffer = default;
        Span<Label> labels = labelValues.Length <= LabelBuffer.Length ? ((Span<Label>)buffer)[..labelValues.Length] : LabelScratch.Rent(labelValues.Length);
        int[] order = _canonicalOrder;
        string[] names = _labelNames;
        for (int i = 0; i < labels.Length; i++)
        {
            int k = order[i];
            labels[i] = new Label(names[k], labelValues[k] ?? string.Empty);
        }

        try
        {
            var lookup = new LabelLookup(_registry, Name, labels);
            return Written(ref lookup, value, timestampUnixMs);
        }
        finally
        {
            if (labels.Length > LabelBuffer.Length)
            {
                labels.Clear();
            }
        }
    }

    /// <summary>The registry lookup of one labelled call, run by the writer holding its gate; remembers a refusal.</summary>
    private ref struct LabelLookup(SeriesRegistry registry, string metric, ReadOnlySpan<Label> labels) : ISeriesLookup
    {
        private readonly ReadOnlySpan<Label> _labels = labels;

        /// <summary>The SDK's own refusals are counted by the collector (<see cref="MetricsCollector.GetRejectedCount"/>).</summary>
        public static bool RefusalsCountedByWriter => false;

        public RejectReason Refused { get; private set; }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public RejectReason Resolve(out SeriesId id)
        {
            RejectReason reason = registry.TryGetOrAdd(metric, _labels, out id);
            Refused = reason;
            return reason;
        }
    }

    internal bool HasSameShape(InstrumentKind kind, ReadOnlySpan<string> labelNames) =>
        kind == Kind && labelNames.SequenceEqual(_labelNames);
}
