using Monitoring.Stream.Model;
using Monitoring.Stream.Statistics;

namespace Monitoring.Stream.Hosting.Queries;

/// <summary>Merges window aggregates into one answer.</summary>
internal sealed class StatisticsAccumulator
{
    private readonly HashSet<LabelSet> _series = [];
    private RunningMoments _moments;
    private DdSketch? _sketch;
    private int _windows;
    private long _from = long.MaxValue;
    private long _to = long.MinValue;

    public void Add(LabelSet labels, WindowAggregate window)
    {
        _series.Add(labels);
        _moments.Merge(window.Moments);
        if (window.Sketch is not null)
        {
            _sketch ??= new DdSketch(window.Sketch.RelativeAccuracy, window.Sketch.MaxBinsPerSign);
            _sketch.Merge(window.Sketch);
        }

        _windows++;
        _from = Math.Min(_from, window.StartUnixMs);
        _to = Math.Max(_to, window.EndUnixMs);
    }

    public MetricStatistics? ToStatistics(string metric) =>
        _windows == 0 ? null : new MetricStatistics(metric, _moments, _sketch, _series.Count, _windows, _from, _to);
}
