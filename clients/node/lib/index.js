"use strict";

// loggate: a client for the loggate gateway (gRPC logging in front of
// RabbitMQ). See README.md; the pino and winston transports are the
// `loggate/pino` and `loggate/winston` entry points.

const { Client, createClient, Tail } = require("./client");
const { Sender, createSender } = require("./sender");
const { LIMITS, LEVEL_NUMBERS, newId } = require("./record");
const { status } = require("@grpc/grpc-js");

module.exports = {
  createClient,
  createSender,
  Client,
  Sender,
  Tail,
  LIMITS,
  Level: LEVEL_NUMBERS,
  status,
  newId,
};
