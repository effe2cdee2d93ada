using BenchmarkDotNet.Attributes;
using Monitoring.Stream.Statistics;

namespace Monitoring.Stream.Benchmarks.Micro;

/// <summary>
/// Per-value cost of the statistics kernel. Each benchmark processes a block of latency-like values
/// (log-normal, median 20 ms); results are per value via OperationsPerInvoke.
/// </summary>
[MemoryDiagnoser]
public class StatisticsBenchmarks
{
    private const int Block = 4096;
    private double[] _values = [];
    private RunningMoments _moments;
    private readonly DdSketch _sketch = new();
    private readonly DdSketch _mergeSource = new();
    private readonly DdSketch _mergeTarget = new();
    private double _naiveSum;
    private double _naiveSumOfSquares;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(42);
        _values = new double[Block];
        for (int i = 0; i < Block; i++)
        {
            double u1 = 1.0 - random.NextDouble();
            double u2 = random.NextDouble();
            double gaussian = Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
            _values[i] = 0.020 * Math.Exp(0.6 * gaussian);
        }

        foreach (double v in _values)
        {
            _sketch.Add(v);
            _mergeSource.Add(v);
            _mergeTarget.Add(v);
        }

        // Values over six decades beside 1e-15 noise: 21 decades, beyond the 17.8 that the default
        // 2,048 bins hold, so every other value lands below the kept window and is folded.
        _atLimitValues = new double[Block];
        for (int i = 0; i < Block; i++)
        {
            _atLimitValues[i] = i % 2 == 0 ? Math.Pow(10, 6 * random.NextDouble()) : 1e-15 * (1 + random.NextDouble());
        }

        foreach (double v in _atLimitValues)
        {
            _atLimitSketch.Add(v);
        }

        // A window of the load harness: 20 latencies (sparse layout), and the 4,096-value sketch (dense).
        for (int i = 0; i < 20; i++)
        {
            _windowSketch.Add(_values[i]);
        }

        _summaryBytes = new byte[Math.Max(_sketch.SummaryBound, _windowSketch.SummaryBound)];
    }

    private double[] _atLimitValues = [];
    private readonly DdSketch _atLimitSketch = new();
    private readonly DdSketch _windowSketch = new();
    private byte[] _summaryBytes = [];
    private readonly double[] _summaryResults = new double[4];

    [Benchmark(Baseline = true, OperationsPerInvoke = Block, Description = "naive sum + sum of squares (reference)")]
    public double NaiveSumOfSquares()
    {
        double s = _naiveSum, s2 = _naiveSumOfSquares;
        foreach (double v in _values)
        {
            s += v;
            s2 += v * v;
        }

        _naiveSum = s;
        _naiveSumOfSquares = s2;
        return s2;
    }

    [Benchmark(OperationsPerInvoke = Block, Description = "RunningMoments.Add (Welford)")]
    public double WelfordUpdate()
    {
        ref RunningMoments m = ref _moments;
        double[] values = _values;
        for (int i = 0; i < values.Length; i++)
        {
            m.Add(values[i], i);
        }

        return m.M2;
    }

    [Benchmark(OperationsPerInvoke = Block, Description = "DdSketch.Add")]
    public ulong SketchInsert()
    {
        DdSketch sketch = _sketch;
        foreach (double v in _values)
        {
            sketch.Add(v);
        }

        return sketch.Count;
    }

    [Benchmark(OperationsPerInvoke = Block, Description = "DdSketch.Add at the bin limit (half the values folded)")]
    public ulong SketchInsertAtLimit()
    {
        DdSketch sketch = _atLimitSketch;
        foreach (double v in _atLimitValues)
        {
            sketch.Add(v);
        }

        return sketch.Count;
    }

    [Benchmark(Description = "DdSketch.WriteSummary, a window of 20 latencies (sparse)")]
    public int SketchSummarySparse() => _windowSketch.WriteSummary(_summaryBytes, s_four, _summaryResults);

    [Benchmark(Description = "DdSketch.WriteSummary, 4,096 latencies (dense)")]
    public int SketchSummaryDense() => _sketch.WriteSummary(_summaryBytes, s_four, _summaryResults);

    [Benchmark(Description = "DdSketch.Merge (4,096 latency values)")]
    public ulong SketchMerge()
    {
        _mergeTarget.Merge(_mergeSource);
        return _mergeTarget.Count;
    }

    [Benchmark(Description = "DdSketch.GetQuantile(0.99)")]
    public double SketchQuantile() => _sketch.GetQuantile(0.99);

    private static readonly double[] s_four = [0.5, 0.9, 0.95, 0.99];
    private readonly double[] _fourResults = new double[4];

    [Benchmark(Description = "DdSketch.GetQuantiles(p50,p90,p95,p99)")]
    public double SketchFourQuantiles()
    {
        _sketch.GetQuantiles(s_four, _fourResults);
        return _fourResults[3];
    }
}
