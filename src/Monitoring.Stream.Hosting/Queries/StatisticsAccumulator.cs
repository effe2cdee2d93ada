using Monitoring.Stream.Model;
using Monitoring.Stream.Statistics;

namespace Monitoring.Stream.Hosting.Queries;

/// <summary>Merges window aggregates into one answer.</summary>
internal sealed class StatisticsAccumulator
{
    private readonly HashSet<LabelSet> _series = [];
    private LabelSet? _lastSeries;
    private RunningMoments _moments;
    private DdSketch? _sketch;
    private int _windows;
    private long _from = long.MaxValue;
    private long _to = long.MinValue;

    /// <summary>Merges a window aggregate held in memory.</summary>
    public void Add(LabelSet labels, WindowAggregate window)
    {
        AddWindow(labels, window.StartUnixMs, window.EndUnixMs, window.Moments);
        if (window.Sketch is not null)
        {
            _sketch ??= new DdSketch(window.Sketch.RelativeAccuracy, window.Sketch.MaxBinsPerSign);
            _sketch.Merge(window.Sketch);
        }
    }

    /// <summary>Merges a window aggregate read from a file, its sketch still serialized (empty: none).</summary>
    public void Add(LabelSet labels, long startUnixMs, long endUnixMs, in RunningMoments moments, ReadOnlySpan<byte> sketch)
    {
        if (!sketch.IsEmpty)
        {
            // PERF: merged from the bytes, not read into a sketch of its own first: no allocation per row.
            // Checked before anything changes, so a malformed sketch leaves the answer as it was.
            if (_sketch is null)
            {
                _sketch = DdSketch.Deserialize(sketch);
            }
            else
            {
                _sketch.MergeSerialized(sketch);
            }
        }

        AddWindow(labels, startUnixMs, endUnixMs, moments);
    }

    private void AddWindow(LabelSet labels, long startUnixMs, long endUnixMs, in RunningMoments moments)
    {
        // PERF: the windows of one series arrive together with the same label set instance.
        if (!ReferenceEquals(labels, _lastSeries))
        {
            _series.Add(labels);
            _lastSeries = labels;
        }

        _moments.Merge(moments);
        _windows++;
        _from = Math.Min(_from, startUnixMs);
        _to = Math.Max(_to, endUnixMs);
    }

    public MetricStatistics? ToStatistics(string metric) =>
        _windows == 0 ? null : new MetricStatistics(metric, _moments, _sketch, _series.Count, _windows, _from, _to);
}
