namespace Monitoring.Stream.Hosting.Health;

/// <summary>How a sink fares, as the engine's health check sees it.</summary>
public enum SinkState
{
    /// <summary>Nothing waiting, or making progress.</summary>
    Ok = 0,

    /// <summary>Writes failed since the previous check and are being retried.</summary>
    Retrying = 1,

    /// <summary>Windows are waiting and none was written for longer than the stall threshold.</summary>
    Stalled = 2,

    /// <summary>Windows were given up after every retry since the previous check: data is being lost.</summary>
    Dropping = 3,
}
