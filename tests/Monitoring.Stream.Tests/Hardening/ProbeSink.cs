using System.Collections.Concurrent;
using System.Threading.Channels;
using Apache.Arrow;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>
/// A sink whose every write is announced (<see cref="NextCallAsync"/>) and then does what the test says:
/// block on a gate, throw, ignore cancellation, keep the batch. It reads the count column during each
/// write so tests can compare what arrived with the engine's counters.
/// </summary>
internal sealed class ProbeSink(string name, Func<ProbeSink.Call, ValueTask>? behaviour = null) : IWindowSink
{
    private readonly Channel<Call> _calls = Channel.CreateUnbounded<Call>();
    private readonly ConcurrentQueue<WindowBatch> _seen = new();
    private int _count;
    private long _pointsRead;

    /// <summary>One call of <see cref="WriteAsync"/>, numbered from 1.</summary>
    internal sealed record Call(int Index, WindowBatch Batch, CancellationToken Token);

    public string Name => name;

    /// <summary>Calls of <see cref="WriteAsync"/> so far.</summary>
    public int Calls => Volatile.Read(ref _count);

    /// <summary>Sum of the count column over every batch this sink was handed (attempts included).</summary>
    public long PointsRead => Interlocked.Read(ref _pointsRead);

    /// <summary>Every batch object this sink was handed, kept as a careless sink would.</summary>
    public IReadOnlyList<WindowBatch> Seen => [.. _seen];

    public bool Completed { get; private set; }

    public async ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
    {
        var call = new Call(Interlocked.Increment(ref _count), batch, cancellationToken);
        _seen.Enqueue(batch);
        var counts = (Int64Array)batch.RecordBatch.Column("count");
        long points = 0;
        for (int r = 0; r < counts.Length; r++)
        {
            points += counts.GetValue(r)!.Value;
        }

        Interlocked.Add(ref _pointsRead, points);
        _calls.Writer.TryWrite(call);
        if (behaviour is not null)
        {
            await behaviour(call);
        }
    }

    /// <summary>The next call of <see cref="WriteAsync"/> (in order), once it has started.</summary>
    public Task<Call> NextCallAsync() => _calls.Reader.ReadAsync().AsTask();

    public ValueTask CompleteAsync(CancellationToken cancellationToken)
    {
        Completed = true;
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
