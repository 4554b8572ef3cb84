// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

interface IChannelFactory {
    function closeChannel(bytes32 channelId, uint256 claimAmount, uint256 nonce, bytes calldata signature)
        external;
    function expireChannel(bytes32 channelId) external;
}

/// @title Reenterer
/// @notice A hostile channel recipient, for tests: when paid by closeChannel it
/// calls back into the factory and records how that call failed.
contract Reenterer {
    IChannelFactory private immutable factory;
    bytes32 private channelId;
    bool public attempted;
    bytes public reentryError;

    constructor(IChannelFactory factory_) {
        factory = factory_;
    }

    function close(bytes32 id, uint256 claimAmount, uint256 nonce, bytes calldata signature) external {
        channelId = id;
        factory.closeChannel(id, claimAmount, nonce, signature);
    }

    receive() external payable {
        if (attempted) return;
        attempted = true;
        try factory.expireChannel(channelId) {} catch (bytes memory reason) {
            reentryError = reason;
        }
    }
}
