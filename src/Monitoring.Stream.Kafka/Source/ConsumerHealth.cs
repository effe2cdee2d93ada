using System.Diagnostics;
using Confluent.Kafka;

namespace Monitoring.Stream.Kafka.Source;

/// <summary>
/// What shows a stalled source: errors librdkafka reported on the consumer (a broker down, a connection
/// refused) and, per partition, how long ago its last message arrived.
/// </summary>
/// <remarks>Written by the consumer thread and librdkafka's error callback, read by any thread: one lock, taken once per message.</remarks>
internal sealed class ConsumerHealth
{
    private readonly Lock _gate = new();
    private readonly Dictionary<int, long> _lastMessage = [];
    private long _errors;
    private string? _lastError;
    private long _lastErrorAt;

    public void OnMessage(int partition)
    {
        long now = Stopwatch.GetTimestamp();
        lock (_gate)
        {
            _lastMessage[partition] = now;
        }
    }

    public void OnError(Error error)
    {
        long now = Stopwatch.GetTimestamp();
        lock (_gate)
        {
            _errors++;
            _lastError = $"{error.Code}: {error.Reason}";
            _lastErrorAt = now;
        }
    }

    public (long Errors, string? LastError, TimeSpan? SinceLastError, Dictionary<int, TimeSpan> SinceLastMessage) Snapshot()
    {
        lock (_gate)
        {
            var ages = new Dictionary<int, TimeSpan>(_lastMessage.Count);
            foreach ((int partition, long at) in _lastMessage)
            {
                ages[partition] = Stopwatch.GetElapsedTime(at);
            }

            return (_errors, _lastError, _lastError is null ? null : Stopwatch.GetElapsedTime(_lastErrorAt), ages);
        }
    }
}
